package io.visionpredictors.client;

import java.time.Duration;

/** 503 {@code JOBS_UNAVAILABLE}: the server's job queue (Redis) cannot be reached for now (retried). */
public class JobsUnavailableException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public JobsUnavailableException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
