package io.visionpredictors.client;

import java.time.Duration;

/** {@code JOB_CANCELLED}: the result of a job that was cancelled (no status). */
public class JobCancelledException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public JobCancelledException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
