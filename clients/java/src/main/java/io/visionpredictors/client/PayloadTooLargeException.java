package io.visionpredictors.client;

import java.time.Duration;

/** 413 {@code PAYLOAD_TOO_LARGE}: a request body over the server's limit. */
public class PayloadTooLargeException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public PayloadTooLargeException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
