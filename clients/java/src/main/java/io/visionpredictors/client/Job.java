package io.visionpredictors.client;

import java.util.Map;
import java.util.Set;

/**
 * An asynchronous job as the server last described it. {@code result} is the v2 answer the synchronous route
 * would have given (as JSON, decoded into maps and lists), once {@code succeeded}; {@code error} is
 * {@code {error, code}} of a failed job.
 *
 * @param status queued, running, succeeded, failed or cancelled
 */
public record Job(String id, String model, String status, String createdAt, String startedAt, String finishedAt,
                  int attempts, Map<String, Object> result, Map<String, Object> error) {
    static final Set<String> FINAL_STATUSES = Set.of("succeeded", "failed", "cancelled");

    /** Whether the job has ended: succeeded, failed or cancelled. */
    public boolean done() {
        return FINAL_STATUSES.contains(status);
    }
}
