package io.visionpredictors.client;

import java.time.Duration;

/** {@code TIMEOUT}: the server's 504, or the call's own deadline passed (no status). */
public class RequestTimeoutException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public RequestTimeoutException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
