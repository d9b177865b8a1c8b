package io.visionpredictors.client;

import java.time.Duration;
import java.util.Map;

/** The exception class of each code, and the HTTP status the server answers each code with. */
final class Errors {
    @FunctionalInterface
    interface Factory {
        PredictorException create(String message, String code, Integer status, String requestId, Duration retryAfter,
                                  Throwable cause);
    }

    static final Map<String, Factory> BY_CODE = Map.ofEntries(
            Map.entry("INVALID_INPUT", InvalidInputException::new),
            Map.entry("INVALID_IMAGE", InvalidImageException::new),
            Map.entry("PAYLOAD_TOO_LARGE", PayloadTooLargeException::new),
            Map.entry("IMAGE_TOO_LARGE", ImageTooLargeException::new),
            Map.entry("MODEL_NOT_FOUND", ModelNotFoundException::new),
            Map.entry("FACE_NOT_FOUND", FaceNotFoundException::new),
            Map.entry("MODEL_NOT_READY", ModelNotReadyException::new),
            Map.entry("SERVICE_BUSY", ServiceBusyException::new),
            Map.entry("TIMEOUT", RequestTimeoutException::new),
            Map.entry("INTERNAL_ERROR", InternalErrorException::new),
            Map.entry("JOB_NOT_FOUND", JobNotFoundException::new),
            Map.entry("JOBS_DISABLED", JobsDisabledException::new),
            Map.entry("JOBS_UNAVAILABLE", JobsUnavailableException::new),
            Map.entry("JOB_CANCELLED", JobCancelledException::new),
            Map.entry("CONNECTION_FAILED", ConnectionFailedException::new),
            Map.entry("UNEXPECTED_RESPONSE", UnexpectedResponseException::new));

    /**
     * A failed job's error has no HTTP answer of its own: its exception carries the status the synchronous
     * call would have had.
     */
    static final Map<String, Integer> STATUS_BY_CODE = Map.of(
            "INVALID_INPUT", 400, "INVALID_IMAGE", 400, "PAYLOAD_TOO_LARGE", 413, "IMAGE_TOO_LARGE", 413,
            "MODEL_NOT_FOUND", 404, "FACE_NOT_FOUND", 422, "MODEL_NOT_READY", 503, "SERVICE_BUSY", 503,
            "TIMEOUT", 504, "INTERNAL_ERROR", 500);

    private Errors() {
    }

    static PredictorException of(String code, String message, Integer status, String requestId, Duration retryAfter) {
        return BY_CODE.getOrDefault(code, PredictorException::new)
                .create(message, code, status, requestId, retryAfter, null);
    }

    static PredictorException unexpected(String message, Integer status, String requestId, Throwable cause) {
        return new UnexpectedResponseException(message, "UNEXPECTED_RESPONSE", status, requestId, null, cause);
    }
}
