package io.visionpredictors.client;

import java.time.Duration;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * Base class of every error this client throws, named after the server's error codes (README "Errors").
 *
 * <p>Unchecked, deliberately: every call can fail the same few ways (the server refused the request, it
 * was busy, no answer came), a caller handles them where it can do something about them (often far up
 * the stack, or not at all but for logging), and the asynchronous methods deliver them through
 * {@link java.util.concurrent.CompletableFuture}s and lambdas, which cannot declare checked exceptions.
 * Catch a subclass ({@link ServiceBusyException}, {@link FaceNotFoundException}, ...) or this class.
 *
 * <p>Every error carries the server's {@link #code()}, the HTTP {@link #status()} (empty when no answer
 * came), the {@link #requestId()} (the one sent on every attempt, or the server's) and the server's
 * {@link #getMessage() message}. A code this client does not know yet is a plain {@code PredictorException}
 * with that code, never a crash.
 */
public class PredictorException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String code;
    private final Integer status;
    private final String requestId;
    private final Duration retryAfter;

    public PredictorException(String message, String code, Integer status, String requestId, Duration retryAfter,
                              Throwable cause) {
        super(message, cause);
        this.code = code;
        this.status = status;
        this.requestId = requestId;
        this.retryAfter = retryAfter;
    }

    /** The stable error code: {@code INVALID_IMAGE}, {@code SERVICE_BUSY}, ... */
    public String code() {
        return code;
    }

    /** The HTTP status of the answer; empty when no answer came (connection failed, the call's own deadline). */
    public OptionalInt status() {
        return status == null ? OptionalInt.empty() : OptionalInt.of(status);
    }

    /** The request id: the one sent as {@code X-Request-ID} on every attempt, or the server's. */
    public String requestId() {
        return requestId;
    }

    /** How long the server asked the caller to wait (a 503 with {@code Retry-After}). */
    public Optional<Duration> retryAfter() {
        return Optional.ofNullable(retryAfter);
    }

    @Override
    public String toString() {
        String answered = status == null ? "" : " " + status;
        return getClass().getName() + ": [" + code + answered + "] " + getMessage() + " (requestId=" + requestId + ")";
    }
}
