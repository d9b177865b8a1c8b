package io.visionpredictors.client;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Whether the image (with the optional premise) entails the hypothesis; scores by class name, in the server's order. */
public record Entailment(String label, Map<String, Double> scores) {
    /** The classes in the order of the {@code scores} vector, for servers that predate {@code element_names}. */
    public static final List<String> CLASSES = List.of("entailment", "contradiction", "neutral");

    public Entailment {
        scores = Collections.unmodifiableMap(new LinkedHashMap<>(scores));
    }

    /** The entailment of each item of a visual-entailment answer. */
    public static List<Entailment> from(InferResult result) {
        Tensor scores = result.output("scores");
        Object named = scores.parameters().get("element_names");
        List<String> names = named instanceof String text && !text.isEmpty() ? List.of(text.split(",")) : CLASSES;
        List<String> labels = result.output("label").strings();
        List<List<Object>> rows = scores.rows();
        List<Entailment> items = new ArrayList<>(labels.size());
        for (int i = 0; i < labels.size(); i++) {
            Map<String, Double> byName = new LinkedHashMap<>();
            for (int j = 0; j < names.size(); j++) {
                byName.put(names.get(j), ((Number) rows.get(i).get(j)).doubleValue());
            }
            items.add(new Entailment(labels.get(i), byName));
        }
        return items;
    }
}
