package io.visionpredictors.client;

import java.time.Duration;

/** 503 {@code MODEL_NOT_READY}: the model is still loading (retried). */
public class ModelNotReadyException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public ModelNotReadyException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
