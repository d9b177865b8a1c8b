package io.visionpredictors.client;

import java.time.Duration;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Which failures are tried again, how often and after how long: 503 {@code SERVICE_BUSY},
 * {@code MODEL_NOT_READY} and {@code JOBS_UNAVAILABLE}, and connection failures; never another status (4xx,
 * 500, 504). At most {@code retries} further attempts; the wait before attempt n+1 is a random value in
 * [0, backoffBase * 2^n] (capped at backoffMax), and at least the server's {@code Retry-After} (plus up to
 * 10 %) when it sends one. A wait the call's deadline cannot afford is not started.
 */
public record RetryPolicy(int retries, Duration backoffBase, Duration backoffMax) {
    /** 3 retries, back-off from 100 ms, at most 5 s. */
    public static final RetryPolicy DEFAULT = new RetryPolicy(3, Duration.ofMillis(100), Duration.ofSeconds(5));

    static final Set<String> RETRYABLE_CODES = Set.of("SERVICE_BUSY", "MODEL_NOT_READY", "JOBS_UNAVAILABLE");

    public RetryPolicy {
        if (retries < 0 || backoffBase.isNegative() || backoffMax.isNegative()) {
            throw new IllegalArgumentException("retries and back-off times must not be negative");
        }
    }

    /** The default back-off with {@code retries} further attempts. */
    public static RetryPolicy ofRetries(int retries) {
        return new RetryPolicy(retries, DEFAULT.backoffBase, DEFAULT.backoffMax);
    }

    /** Nanoseconds to wait before attempt {@code attempt + 1}, or -1 to give up and throw {@code error}. */
    long delayNanos(int attempt, PredictorException error, long remainingNanos) {
        boolean retryable = error instanceof ConnectionFailedException
                || (error.status().orElse(0) == 503 && RETRYABLE_CODES.contains(error.code()));
        if (!retryable || attempt >= retries) {
            return -1;
        }
        ThreadLocalRandom random = ThreadLocalRandom.current();
        double ceiling = Math.min(backoffMax.toNanos(), backoffBase.toNanos() * Math.pow(2, attempt));
        long delay = (long) (random.nextDouble() * ceiling);
        if (error.retryAfter().isPresent()) {
            // at least what the server asked for; spread a little so waiting clients do not return together
            delay = Math.max(delay, (long) (error.retryAfter().get().toNanos() * (1 + 0.1 * random.nextDouble())));
        }
        return delay < remainingNanos ? delay : -1;
    }
}
