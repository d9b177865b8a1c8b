package io.visionpredictors.client;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The Open Inference Protocol (KServe v2) over REST: JSON, and JSON plus the binary tensor extension.
 *
 * <p>Every input of the server's models is a 1-D {@code BYTES} tensor of shape {@code [N]}. Over the binary
 * extension the request body is a JSON header followed by each tensor's raw bytes (each element as a 4-byte
 * little-endian length and its bytes), the header's length in {@code Inference-Header-Content-Length};
 * nothing is base64-encoded. Over JSON, binary elements are base64 strings and text elements plain strings.
 * Outputs come back the same way ({@code binary_data_output}), each with its datatype and shape.
 */
final class Wire {
    static final String HEADER_LENGTH = "Inference-Header-Content-Length";

    /** An encoded request: its body and content headers. */
    record Encoded(byte[] body, Map<String, String> headers) {
    }

    private final ObjectMapper json;

    Wire(ObjectMapper json) {
        this.json = json;
    }

    /** {@code inputs}: each input's elements, a {@code String} (text) or {@code byte[]} (binary content). */
    Encoded encode(Map<String, List<Object>> inputs, Map<String, ?> parameters, Protocol protocol) {
        ArrayNode tensors = json.createArrayNode();
        ObjectNode document = json.createObjectNode();
        document.set("inputs", tensors);
        if (protocol == Protocol.JSON) {
            inputs.forEach((name, values) -> {
                ArrayNode data = tensor(tensors, name, values.size()).putArray("data");
                for (Object value : values) {
                    data.add(value instanceof String text ? text : Base64.getEncoder().encodeToString((byte[]) value));
                }
            });
            if (!parameters.isEmpty()) {
                document.set("parameters", json.valueToTree(parameters));
            }
            return new Encoded(write(document), Map.of("Content-Type", "application/json"));
        }
        ByteArrayOutputStream raw = new ByteArrayOutputStream();
        inputs.forEach((name, values) -> {
            int before = raw.size();
            for (Object value : values) {
                byte[] bytes = value instanceof String text ? text.getBytes(StandardCharsets.UTF_8) : (byte[]) value;
                raw.writeBytes(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(bytes.length).array());
                raw.writeBytes(bytes);
            }
            tensor(tensors, name, values.size()).putObject("parameters").put("binary_data_size", raw.size() - before);
        });
        ObjectNode given = json.valueToTree(parameters);
        given.put("binary_data_output", true);
        document.set("parameters", given);
        byte[] header = write(document);
        byte[] body = Arrays.copyOf(header, header.length + raw.size());
        System.arraycopy(raw.toByteArray(), 0, body, header.length, raw.size());
        return new Encoded(body, Map.of("Content-Type", "application/octet-stream",
                HEADER_LENGTH, String.valueOf(header.length)));
    }

    private static ObjectNode tensor(ArrayNode tensors, String name, int count) {
        ObjectNode tensor = tensors.addObject();
        tensor.put("name", name).put("datatype", "BYTES").putArray("shape").add(count);
        return tensor;
    }

    private byte[] write(JsonNode document) {
        try {
            return json.writeValueAsBytes(document);
        } catch (JsonProcessingException error) {
            throw new IllegalArgumentException("parameters that cannot be written as JSON: " + error.getMessage(), error);
        }
    }

    /** Parse a v2 answer: JSON, or a JSON header and binary outputs. */
    InferResult decode(byte[] body, String headerLength, String requestId) {
        JsonNode document;
        int jsonLength;
        try {
            jsonLength = headerLength == null ? body.length : Integer.parseInt(headerLength.trim());
            if (jsonLength < 0 || jsonLength > body.length) {
                throw new IllegalArgumentException("bad " + HEADER_LENGTH + ": " + headerLength);
            }
            document = json.readTree(body, 0, jsonLength);
        } catch (java.io.IOException | RuntimeException error) {
            throw Errors.unexpected("the server's v2 answer could not be read: " + error, 200, requestId, error);
        }
        return decode(document, body, jsonLength, requestId);
    }

    /** A v2 answer already parsed; binary outputs, if any, are in {@code body} from {@code offset} on. */
    InferResult decode(JsonNode document, byte[] body, int offset, String requestId) {
        try {
            Map<String, Tensor> tensors = new LinkedHashMap<>();
            JsonNode outputs = document.get("outputs");
            if (outputs == null || !outputs.isArray()) {
                throw new IllegalArgumentException("no outputs");
            }
            for (JsonNode output : outputs) {
                String name = output.get("name").asText();
                String datatype = output.get("datatype").asText();
                List<Long> shape = new ArrayList<>();
                output.get("shape").forEach(dimension -> shape.add(dimension.asLong()));
                Map<String, Object> parameters = new LinkedHashMap<>();
                if (output.hasNonNull("parameters")) {
                    output.get("parameters").properties().forEach(field ->
                            parameters.put(field.getKey(), json.convertValue(field.getValue(), Object.class)));
                }
                Object size = parameters.remove("binary_data_size");
                List<Object> data;
                if (size != null) {
                    int length = ((Number) size).intValue();
                    data = decodeBinary(Arrays.copyOfRange(body, offset, offset + length), datatype, count(shape));
                    offset += length;
                } else {
                    data = new ArrayList<>();
                    flatten(output.get("data"), data);
                }
                tensors.put(name, new Tensor(name, datatype, shape, data, parameters));
            }
            JsonNode modelName = document.get("model_name");
            return new InferResult(modelName == null ? "" : modelName.asText(), tensors, requestId);
        } catch (RuntimeException error) {
            if (error instanceof PredictorException predictorError) {
                throw predictorError;
            }
            throw Errors.unexpected("the server's v2 answer could not be read: " + error, 200, requestId, error);
        }
    }

    private static int count(List<Long> shape) {
        long count = 1;
        for (long dimension : shape) {
            count *= dimension;
        }
        return Math.toIntExact(count);
    }

    private static List<Object> decodeBinary(byte[] raw, String datatype, int expected) {
        ByteBuffer buffer = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        List<Object> values = new ArrayList<>();
        while (buffer.hasRemaining()) {
            values.add(switch (datatype) {
                case "BYTES" -> {
                    byte[] element = new byte[buffer.getInt()];
                    buffer.get(element);
                    yield element;
                }
                case "BOOL" -> buffer.get() != 0;
                case "UINT8" -> buffer.get() & 0xff;
                case "INT8" -> buffer.get();
                case "UINT16" -> buffer.getShort() & 0xffff;
                case "INT16" -> buffer.getShort();
                case "UINT32" -> buffer.getInt() & 0xffffffffL;
                case "INT32" -> buffer.getInt();
                case "UINT64", "INT64" -> buffer.getLong();
                case "FP16" -> halfToFloat(buffer.getShort());
                case "FP32" -> buffer.getFloat();
                case "FP64" -> buffer.getDouble();
                default -> throw new IllegalArgumentException("unknown datatype " + datatype);
            });
        }
        if (values.size() != expected) {
            throw new IllegalArgumentException(datatype + " tensor holds " + values.size() + " elements, its shape says "
                    + expected);
        }
        return values;
    }

    private static float halfToFloat(short half) {
        int bits = half & 0xffff;
        int sign = (bits & 0x8000) << 16;
        int exponent = (bits >> 10) & 0x1f;
        int fraction = bits & 0x3ff;
        if (exponent == 0) {
            return (sign != 0 ? -1 : 1) * fraction * 0x1p-24f;
        }
        if (exponent == 0x1f) {
            return Float.intBitsToFloat(sign | 0x7f800000 | (fraction << 13));
        }
        return Float.intBitsToFloat(sign | ((exponent + 112) << 23) | (fraction << 13));
    }

    private void flatten(JsonNode data, List<Object> into) {
        if (data == null || data.isNull()) {
            return;
        }
        if (data.isArray()) {
            data.forEach(value -> flatten(value, into));
        } else {
            into.add(json.convertValue(data, Object.class));
        }
    }
}
