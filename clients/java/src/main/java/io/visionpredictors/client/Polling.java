package io.visionpredictors.client;

import java.time.Duration;

/**
 * {@code waitFor}'s pauses after a long poll that came back early with the job unfinished (a server without
 * long polls, or one shutting down): {@code first}, then each {@code factor} times longer (with jitter), at
 * most {@code longest}.
 */
public record Polling(Duration first, double factor, Duration longest) {
    /** 50 ms, then 1.5 times longer each time, at most 2 s. */
    public static final Polling DEFAULT = new Polling(Duration.ofMillis(50), 1.5, Duration.ofSeconds(2));
}
