package io.visionpredictors.client;

import java.time.Duration;

/** 500 {@code INTERNAL_ERROR}: a bug on the server (its log has the cause, under the request id). */
public class InternalErrorException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public InternalErrorException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
