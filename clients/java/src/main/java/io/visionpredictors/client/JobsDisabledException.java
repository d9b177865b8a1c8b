package io.visionpredictors.client;

import java.time.Duration;

/** 404 {@code JOBS_DISABLED}: the server runs without asynchronous jobs. */
public class JobsDisabledException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public JobsDisabledException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
