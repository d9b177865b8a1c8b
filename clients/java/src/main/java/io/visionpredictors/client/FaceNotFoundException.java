package io.visionpredictors.client;

import java.time.Duration;

/** 422 {@code FACE_NOT_FOUND}: face enhancement with requireFace and no face found. */
public class FaceNotFoundException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public FaceNotFoundException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
