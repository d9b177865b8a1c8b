package io.visionpredictors.client;

import java.time.Duration;

/** 404 {@code MODEL_NOT_FOUND}: no served model of that name. */
public class ModelNotFoundException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public ModelNotFoundException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
