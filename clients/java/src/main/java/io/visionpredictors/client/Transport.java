package io.visionpredictors.client;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpHeaders;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Function;

/**
 * Sends a call, built once, with one {@link RetryPolicy}: another attempt on 503 {@code SERVICE_BUSY} /
 * {@code MODEL_NOT_READY} / {@code JOBS_UNAVAILABLE} and on connection failures, after {@code Retry-After}
 * when the server gives one, else after a jittered exponential back-off, all within one overall deadline;
 * never on another status. Every attempt carries the same {@code X-Request-ID} and the remaining deadline as
 * {@code X-Request-Timeout-Ms}. Cancelling the returned future cancels the attempt in flight.
 */
final class Transport {
    static final String REQUEST_ID_HEADER = "X-Request-ID";
    static final String TIMEOUT_HEADER = "X-Request-Timeout-Ms";
    /** An attempt waits this much longer than the deadline, so the server's own 504 arrives instead of a cut-off. */
    private static final long ANSWER_GRACE_NANOS = TimeUnit.MILLISECONDS.toNanos(250);
    static final TypeReference<Map<String, Object>> JSON_OBJECT = new TypeReference<>() { };

    /** An answer: its status, headers, body and request id (the server's, else the one sent). */
    record Answer(int status, HttpHeaders headers, byte[] body, String requestId) {
    }

    /** One logical call, sent unchanged on every attempt. */
    record Call<T>(String method, String path, byte[] body, Map<String, String> headers,
                   Function<Answer, T> decode, String requestId, long budgetNanos) {
    }

    private final String url;
    private final RetryPolicy retryPolicy;
    private final HttpClient http;
    private final ObjectMapper json;

    Transport(String url, RetryPolicy retryPolicy, HttpClient http, ObjectMapper json) {
        this.url = url;
        this.retryPolicy = retryPolicy;
        this.http = http;
        this.json = json;
    }

    <T> CompletableFuture<T> run(Call<T> call) {
        CompletableFuture<T> result = new CompletableFuture<>();
        AtomicReference<Future<?>> inFlight = new AtomicReference<>();
        result.whenComplete((value, error) -> cancelIfCancelled(result, inFlight));
        attempt(call, System.nanoTime() + call.budgetNanos, 0, null, result, inFlight);
        return result;
    }

    private <T> void attempt(Call<T> call, long deadline, int attempt, PredictorException last,
                             CompletableFuture<T> result, AtomicReference<Future<?>> inFlight) {
        if (result.isDone()) {
            return;
        }
        long remaining = deadline - System.nanoTime();
        if (remaining <= 0) {
            // a retry's wait that overran the deadline (by a timer's slack): the last attempt's error stands
            result.completeExceptionally(last != null ? last : new RequestTimeoutException("the call's deadline of "
                    + millis(call.budgetNanos) + " ms passed", "TIMEOUT", null, call.requestId, null, null));
            return;
        }
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(url + call.path))
                .timeout(Duration.ofNanos(remaining + ANSWER_GRACE_NANOS))
                .method(call.method, call.body == null ? HttpRequest.BodyPublishers.noBody()
                        : HttpRequest.BodyPublishers.ofByteArray(call.body));
        call.headers.forEach(request::header);
        request.header(REQUEST_ID_HEADER, call.requestId);
        request.header(TIMEOUT_HEADER, String.valueOf(Math.max(1, TimeUnit.NANOSECONDS.toMillis(remaining))));
        CompletableFuture<HttpResponse<byte[]>> sent = http.sendAsync(request.build(),
                HttpResponse.BodyHandlers.ofByteArray());
        inFlight.set(sent);
        if (result.isDone()) {
            sent.cancel(true);
            return;
        }
        sent.whenComplete((response, error) -> {
            PredictorException failure;
            if (error != null) {
                failure = noAnswer(call, unwrap(error));
            } else {
                String requestId = response.headers().firstValue(REQUEST_ID_HEADER).orElse(call.requestId);
                Answer answer = new Answer(response.statusCode(), response.headers(), response.body(), requestId);
                if (answer.status == 200 || answer.status == 202) {
                    try {
                        result.complete(call.decode.apply(answer));
                        return;
                    } catch (PredictorException decodeFailure) {
                        failure = decodeFailure;
                    } catch (RuntimeException bug) {
                        result.completeExceptionally(bug);
                        return;
                    }
                } else {
                    failure = errorOf(answer, call.requestId);
                }
            }
            long delay = retryPolicy.delayNanos(attempt, failure, deadline - System.nanoTime());
            if (delay < 0) {
                result.completeExceptionally(failure);
                return;
            }
            PredictorException retried = failure;
            CompletableFuture.delayedExecutor(delay, TimeUnit.NANOSECONDS)
                    .execute(() -> attempt(call, deadline, attempt + 1, retried, result, inFlight));
        });
    }

    static void cancelIfCancelled(CompletableFuture<?> result, AtomicReference<Future<?>> inFlight) {
        Future<?> current = inFlight.get();
        if (result.isCancelled() && current != null) {
            current.cancel(true);
        }
    }

    private PredictorException noAnswer(Call<?> call, Throwable error) {
        if (error instanceof HttpTimeoutException) {
            return new RequestTimeoutException("no answer within the call's deadline of " + millis(call.budgetNanos)
                    + " ms (" + error + ")", "TIMEOUT", null, call.requestId, null, error);
        }
        return new ConnectionFailedException(call.method + " " + url + call.path + ": " + error, "CONNECTION_FAILED",
                null, call.requestId, null, error);
    }

    private PredictorException errorOf(Answer answer, String requestId) {
        Duration retryAfter = parseRetryAfter(answer.headers.firstValue("Retry-After").orElse(null));
        Map<String, Object> body;
        try {
            body = json.readValue(answer.body, JSON_OBJECT);
        } catch (IOException | RuntimeException error) {
            body = null;
        }
        if (body == null || !(body.get("code") instanceof String code)) {
            String text = new String(answer.body, StandardCharsets.UTF_8);
            return new UnexpectedResponseException("HTTP " + answer.status + ": " + text.substring(0, Math.min(300,
                    text.length())), "UNEXPECTED_RESPONSE", answer.status, answer.requestId, retryAfter, null);
        }
        Object answered = body.get("request_id");
        String id = answered instanceof String text && !text.isEmpty() ? text
                : Objects.requireNonNullElse(answer.requestId, requestId);
        return Errors.of(code, String.valueOf(body.getOrDefault("error", "")), answer.status, id, retryAfter);
    }

    /** {@code Retry-After}: a number of seconds or an HTTP date; null when absent or unreadable. */
    static Duration parseRetryAfter(String value) {
        if (value == null || value.isBlank()) {
            return null;
        }
        try {
            return Duration.ofMillis(Math.max(0, Math.round(Double.parseDouble(value.trim()) * 1000)));
        } catch (NumberFormatException notSeconds) {
            try {
                ZonedDateTime when = ZonedDateTime.parse(value.trim(), DateTimeFormatter.RFC_1123_DATE_TIME);
                Duration left = Duration.between(ZonedDateTime.now(when.getZone()), when);
                return left.isNegative() ? Duration.ZERO : left;
            } catch (DateTimeParseException notADate) {
                return null;
            }
        }
    }

    static Throwable unwrap(Throwable error) {
        while ((error instanceof CompletionException || error instanceof ExecutionException) && error.getCause() != null) {
            error = error.getCause();
        }
        return error;
    }

    private static long millis(long nanos) {
        return TimeUnit.NANOSECONDS.toMillis(nanos);
    }
}
