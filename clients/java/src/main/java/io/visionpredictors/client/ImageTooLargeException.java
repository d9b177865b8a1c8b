package io.visionpredictors.client;

import java.time.Duration;

/** 413 {@code IMAGE_TOO_LARGE}: an image over the pixel count or side a model accepts. */
public class ImageTooLargeException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public ImageTooLargeException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
