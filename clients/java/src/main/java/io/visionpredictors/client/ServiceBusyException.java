package io.visionpredictors.client;

import java.time.Duration;

/** 503 {@code SERVICE_BUSY}: the queue or the job backlog is full; see {@link #retryAfter()} (retried). */
public class ServiceBusyException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public ServiceBusyException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
