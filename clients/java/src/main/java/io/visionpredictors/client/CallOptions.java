package io.visionpredictors.client;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * What every call may carry besides its inputs: the served model's name (instead of the method's default),
 * a request id (sent as {@code X-Request-ID} on every attempt; default a fresh one), the call's deadline
 * (retries included; also sent to the server as {@code X-Request-Timeout-Ms}; default the client's), the
 * caller's W3C trace context ({@code traceparent}, {@code tracestate}) and extra headers. Immutable:
 * {@code CallOptions.builder().requestId("order-17").timeout(Duration.ofSeconds(5)).build()}.
 */
public final class CallOptions {
    /** No options: the method's model, a fresh request id, the client's deadline. */
    public static final CallOptions NONE = builder().build();

    private final String model;
    private final String requestId;
    private final Duration timeout;
    private final Map<String, String> headers;

    private CallOptions(Builder builder) {
        this.model = builder.model;
        this.requestId = builder.requestId;
        this.timeout = builder.timeout;
        this.headers = Map.copyOf(builder.headers);
    }

    public static Builder builder() {
        return new Builder();
    }

    String model(String fallback) {
        return model != null ? model : fallback;
    }

    String requestId() {
        return requestId;
    }

    Duration timeout() {
        return timeout;
    }

    Map<String, String> headers() {
        return headers;
    }

    /** Builds {@link CallOptions}. */
    public static final class Builder {
        private String model;
        private String requestId;
        private Duration timeout;
        private final Map<String, String> headers = new LinkedHashMap<>();

        private Builder() {
        }

        /** The served model to call instead of the method's default model. */
        public Builder model(String model) {
            this.model = Objects.requireNonNull(model, "model");
            return this;
        }

        public Builder requestId(String requestId) {
            this.requestId = Objects.requireNonNull(requestId, "requestId");
            return this;
        }

        /** The call's deadline, retries included. */
        public Builder timeout(Duration timeout) {
            if (timeout.isNegative() || timeout.isZero()) {
                throw new IllegalArgumentException("the timeout must be positive");
            }
            this.timeout = timeout;
            return this;
        }

        /** The W3C {@code traceparent} of the caller's span: the server's spans join its trace. */
        public Builder traceparent(String traceparent) {
            return header("traceparent", traceparent);
        }

        public Builder tracestate(String tracestate) {
            return header("tracestate", tracestate);
        }

        public Builder header(String name, String value) {
            headers.put(Objects.requireNonNull(name, "name"), Objects.requireNonNull(value, "value"));
            return this;
        }

        public CallOptions build() {
            return new CallOptions(this);
        }
    }
}
