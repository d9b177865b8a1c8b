package io.visionpredictors.client;

import java.time.Duration;

/** {@code CONNECTION_FAILED}: no answer; the server could not be reached or dropped the connection (no status). */
public class ConnectionFailedException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public ConnectionFailedException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
