package io.visionpredictors.client;

import java.time.Duration;
import java.util.Locale;
import java.util.Objects;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * The requests of one {@code waitFor}: each a long poll ({@code GET /v2/jobs/{id}?wait=W}) of the time left, at
 * most 20 s; after an answer that came back before its hold with the job unfinished (a server without long
 * polls, or one shutting down), the next {@link Polling} pause first.
 */
final class LongPolls {
    /** The longest hold one long poll asks for (the server holds at most 30 s). */
    private static final long LONG_POLL_NANOS = TimeUnit.SECONDS.toNanos(20);
    /** A long poll's HTTP timeout exceeds its hold by this, so its answer after the hold is never cut off. */
    static final long GRACE_NANOS = TimeUnit.SECONDS.toNanos(5);

    final String jobId;
    final Duration timeout;
    final long deadline;
    private final Polling polling;
    private double pauseNanos;
    private long holdNanos;
    private long sentAt;

    LongPolls(String jobId, Duration timeout, Polling polling) {
        this.jobId = Objects.requireNonNull(jobId, "jobId");
        this.timeout = timeout;
        this.deadline = System.nanoTime() + timeout.toNanos();
        this.polling = polling;
        this.pauseNanos = polling.first().toNanos();
    }

    long hold(Job current) {
        long now = System.nanoTime();
        long remaining = deadline - now;
        if (remaining <= 0) {
            throw new RequestTimeoutException("job " + jobId + " did not finish within " + timeout.toMillis()
                    + " ms (it is " + (current == null ? "unknown" : current.status()) + ")", "TIMEOUT", null,
                    jobId, null, null);
        }
        holdNanos = Math.min(remaining, LONG_POLL_NANOS);
        sentAt = now;
        return holdNanos;
    }

    /** None after a poll held for its whole hold, else the next {@link Polling} pause (within the deadline). */
    long pause() {
        long now = System.nanoTime();
        if (now - sentAt >= holdNanos) {
            return 0;
        }
        long pause = (long) ((0.8 + 0.2 * ThreadLocalRandom.current().nextDouble()) * pauseNanos);
        pauseNanos = Math.min(polling.longest().toNanos(), pauseNanos * polling.factor());
        return Math.max(0, Math.min(pause, deadline - now));
    }

    String path(long holdNanos) {
        return PredictorsClient.jobPath(jobId) + String.format(Locale.ROOT, "?wait=%.3f", holdNanos / 1e9);
    }
}
