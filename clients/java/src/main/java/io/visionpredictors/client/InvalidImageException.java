package io.visionpredictors.client;

import java.time.Duration;

/** 400 {@code INVALID_IMAGE}: image bytes that do not decode. */
public class InvalidImageException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public InvalidImageException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
