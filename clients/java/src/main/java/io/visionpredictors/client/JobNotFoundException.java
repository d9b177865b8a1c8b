package io.visionpredictors.client;

import java.time.Duration;

/** 404 {@code JOB_NOT_FOUND}: no such job: never submitted, or expired. */
public class JobNotFoundException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public JobNotFoundException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
