package io.visionpredictors.client;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * One output tensor: {@code data} is flat, in row-major order. BYTES elements are {@code byte[]} over the
 * binary extension and the server's strings over JSON; numbers are {@link Number}s, BOOL {@link Boolean}s.
 */
public record Tensor(String name, String datatype, List<Long> shape, List<Object> data, Map<String, Object> parameters) {
    public Tensor {
        shape = List.copyOf(shape);
        data = List.copyOf(data);
        parameters = Map.copyOf(parameters);
    }

    /** The elements grouped by the first (batch) dimension. */
    public List<List<Object>> rows() {
        int count = shape.isEmpty() ? 1 : shape.get(0).intValue();
        int width = count == 0 ? 0 : data.size() / count;
        List<List<Object>> rows = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            rows.add(data.subList(i * width, (i + 1) * width));
        }
        return rows;
    }

    /** The elements as text (BYTES as UTF-8). */
    public List<String> strings() {
        List<String> strings = new ArrayList<>(data.size());
        for (Object value : data) {
            strings.add(text(value));
        }
        return strings;
    }

    static String text(Object value) {
        return value instanceof byte[] bytes ? new String(bytes, StandardCharsets.UTF_8) : String.valueOf(value);
    }

    /** The elements as doubles (numeric datatypes). */
    public List<Double> doubles() {
        List<Double> doubles = new ArrayList<>(data.size());
        for (Object value : data) {
            doubles.add(((Number) value).doubleValue());
        }
        return doubles;
    }
}
