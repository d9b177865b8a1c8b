package io.visionpredictors.client;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** The answer of a generic {@code infer} call: output tensors by name, in the server's order. */
public record InferResult(String modelName, Map<String, Tensor> outputs, String requestId) {
    public InferResult {
        outputs = Collections.unmodifiableMap(new LinkedHashMap<>(outputs));
    }

    /** The output {@code name}; an {@link UnexpectedResponseException} when the model has no such output. */
    public Tensor output(String name) {
        Tensor tensor = outputs.get(name);
        if (tensor == null) {
            throw Errors.unexpected("model '" + modelName + "' answered without output '" + name + "' (outputs: "
                    + outputs.keySet() + "); is it the right kind of model for this method?", 200, requestId, null);
        }
        return tensor;
    }
}
