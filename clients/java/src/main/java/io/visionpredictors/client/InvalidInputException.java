package io.visionpredictors.client;

import java.time.Duration;

/** 400 {@code INVALID_INPUT}: a missing, ill-typed or out-of-range input or parameter. */
public class InvalidInputException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public InvalidInputException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
