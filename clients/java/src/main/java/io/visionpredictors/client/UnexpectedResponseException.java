package io.visionpredictors.client;

import java.time.Duration;

/** {@code UNEXPECTED_RESPONSE}: an answer outside the contract (a proxy's page, a non-JSON body). */
public class UnexpectedResponseException extends PredictorException {
    private static final long serialVersionUID = 1L;

    public UnexpectedResponseException(String message, String code, Integer status, String requestId, Duration retryAfter, Throwable cause) {
        super(message, code, status, requestId, retryAfter, cause);
    }
}
