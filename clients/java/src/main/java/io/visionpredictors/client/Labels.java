package io.visionpredictors.client;

import java.util.ArrayList;
import java.util.List;

/** Top-k labels, best first, and their softmax scores. */
public record Labels(List<String> labels, List<Double> scores) {
    public Labels {
        labels = List.copyOf(labels);
        scores = List.copyOf(scores);
    }

    /** The labels of each item of a classifier's answer (a job's result, say). */
    public static List<Labels> from(InferResult result) {
        List<List<Object>> scoreRows = result.output("scores").rows();
        List<List<Object>> labelRows = result.output("labels").rows();
        List<Labels> items = new ArrayList<>(labelRows.size());
        for (int i = 0; i < labelRows.size(); i++) {
            List<String> labels = labelRows.get(i).stream().map(Tensor::text).toList();
            List<Double> scores = scoreRows.get(i).stream().map(score -> ((Number) score).doubleValue()).toList();
            items.add(new Labels(labels, scores));
        }
        return items;
    }
}
