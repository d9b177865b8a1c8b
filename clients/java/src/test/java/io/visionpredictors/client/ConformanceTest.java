package io.visionpredictors.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * The SDK against the shared test vectors (clients/conformance/vectors.json) and the real server.
 *
 * <p>The suite (tests/integration/test_conformance.py) starts the servers, resolves the vectors' references
 * and runs {@code mvn test} with CONFORMANCE_VECTORS (the resolved vectors), CONFORMANCE_SERVERS (name ->
 * url and log file), CONFORMANCE_IMAGES (the images' directory) and CONFORMANCE_RUN (a prefix for request
 * ids). clients/conformance/README.md defines what a vector means; this class is its Java reading.
 */
class ConformanceTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final JsonNode document = JSON.readTree(Files.readString(Path.of(env("CONFORMANCE_VECTORS"))));
    private final JsonNode servers = JSON.readTree(env("CONFORMANCE_SERVERS"));
    private final Path images = Path.of(env("CONFORMANCE_IMAGES"));
    private final String run = env("CONFORMANCE_RUN");

    ConformanceTest() throws IOException {
    }

    private static String env(String name) {
        String value = System.getenv(name);
        if (value == null || value.isEmpty()) {
            throw new IllegalStateException(name + " is not set: the vectors run against servers the suite starts "
                    + "(pytest tests/integration/test_conformance.py)");
        }
        return value;
    }

    @TestFactory
    Stream<DynamicTest> vectors() {
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode vector : document.get("vectors")) {
            tests.add(DynamicTest.dynamicTest(vector.get("name").asText(), () -> runVector(vector)));
        }
        return tests.stream();
    }

    /** What one vector's steps share: the request id prefix, saved results, the current step's request id. */
    private static final class Context {
        final String prefix;
        final double tolerance;
        final Map<String, Object[]> saved = new HashMap<>();
        String requestId;

        Context(String prefix, double tolerance) {
            this.prefix = prefix;
            this.tolerance = tolerance;
        }
    }

    private void runVector(JsonNode vector) throws Exception {
        Map<String, Object> client = new LinkedHashMap<>(plain(document.get("defaults").get("client")));
        if (vector.has("client")) {
            client.putAll(plain(vector.get("client")));
        }
        JsonNode server = servers.get((String) client.get("server"));
        assertNotNull(server, "no server " + client.get("server"));
        RetryPolicy policy = new RetryPolicy(((Number) client.get("retries")).intValue(),
                Duration.ofMillis(((Number) client.getOrDefault("backoff_base_ms", 100)).longValue()),
                Duration.ofMillis(((Number) client.getOrDefault("backoff_max_ms", 5000)).longValue()));
        PredictorsClient sdk = PredictorsClient.builder(server.get("url").asText() + client.getOrDefault("path", ""))
                .timeout(Duration.ofMillis(((Number) client.get("timeout_ms")).longValue()))
                .retryPolicy(policy)
                .protocol(Protocol.valueOf(((String) client.getOrDefault("protocol", "binary")).toUpperCase()))
                .build();
        Context context = new Context(run + "." + vector.get("name").asText(),
                document.get("defaults").get("tolerance").asDouble());
        int index = 0;
        for (JsonNode step : vector.get("steps")) {
            runStep(sdk, Path.of(server.get("log").asText()), step, index++, context);
        }
    }

    // ---- building the arguments ----------------------------------------------------------------------

    private Image image(JsonNode spec) throws IOException {
        if (spec.has("zeros")) {
            return Image.of(new byte[spec.get("zeros").asInt()]);
        }
        Path path = images.resolve(spec.get("file").asText());
        return switch (spec.path("as").asText("bytes")) {
            case "path" -> Image.of(path);
            case "bytes" -> Image.of(Files.readAllBytes(path));
            case "stream" -> Image.of(Files.newInputStream(path));
            case "blob" -> Image.of(ByteBuffer.wrap(Files.readAllBytes(path)));
            default -> throw new IllegalArgumentException("unknown image kind " + spec.get("as"));
        };
    }

    private List<Image> images(JsonNode spec) throws IOException {
        List<Image> list = new ArrayList<>();
        if (spec.isArray()) {
            for (JsonNode one : spec) {
                list.add(image(one));
            }
        } else {
            for (int i = 0; i < spec.path("times").asInt(1); i++) {
                list.add(image(spec));
            }
        }
        return list;
    }

    private static boolean batched(JsonNode spec) {
        return spec.isArray() || spec.has("times");
    }

    private Object value(JsonNode spec, Context context) throws IOException {
        if (spec.isObject()) {
            if (spec.has("$saved")) {
                return saved(spec.get("$saved").asText(), context, true);
            }
            if (spec.has("$unique")) {
                return context.prefix + "." + spec.get("$unique").asText();
            }
            if (spec.has("text")) {
                return spec.get("text").asText().repeat(spec.path("times").asInt(1));
            }
            if (spec.has("file") || spec.has("zeros")) {
                return batched(spec) ? images(spec) : image(spec);
            }
        }
        if (spec.isArray()) {
            List<Object> values = new ArrayList<>();
            for (JsonNode one : spec) {
                values.add(value(one, context));
            }
            return values;
        }
        return plainValue(spec);
    }

    private static Object saved(String path, Context context, boolean raw) {
        String[] parts = path.split("\\.");
        Object[] entry = context.saved.get(parts[0]);
        assertNotNull(entry, "nothing saved as " + parts[0]);
        if (raw && parts.length == 1) {
            return ((Job) entry[0]).id();
        }
        Object found = entry[1];
        for (int i = 1; i < parts.length; i++) {
            found = ((Map<?, ?>) found).get(parts[i]);
        }
        return found;
    }

    private Map<String, Object> inputs(JsonNode spec, Context context) throws IOException {
        Map<String, Object> inputs = new LinkedHashMap<>();
        for (var field : spec.properties()) {
            inputs.put(field.getKey(), value(field.getValue(), context));
        }
        return inputs;
    }

    private static Map<String, Object> parameters(JsonNode args) {
        return args.has("parameters") ? plain(args.get("parameters")) : Map.of();
    }

    private static Duration millis(JsonNode args, String name) {
        return args.has(name) ? Duration.ofMillis(args.get(name).asLong()) : null;
    }

    @SuppressWarnings("unchecked")
    private CompletableFuture<?> call(PredictorsClient sdk, String method, JsonNode args, CallOptions options,
                                      Context context) throws IOException {
        return switch (method) {
            case "recognize" -> batched(args.get("image"))
                    ? sdk.recognizeAsync(images(args.get("image")), args.path("top_k").asInt(5), options)
                    : sdk.recognizeAsync(image(args.get("image")), args.path("top_k").asInt(5), options);
            case "classify" -> batched(args.get("image"))
                    ? sdk.classifyAsync(images(args.get("image")), args.path("top_k").asInt(5), options)
                    : sdk.classifyAsync(image(args.get("image")), args.path("top_k").asInt(5), options);
            case "enhance_face" -> {
                FaceOptions.Builder face = FaceOptions.builder();
                if (args.has("output_format")) face.outputFormat(args.get("output_format").asText());
                if (args.has("jpeg_quality")) face.jpegQuality(args.get("jpeg_quality").asInt());
                if (args.has("require_face")) face.requireFace(args.get("require_face").asBoolean());
                if (args.has("upscale")) face.upscale(args.get("upscale").asBoolean());
                yield batched(args.get("image"))
                        ? sdk.enhanceFaceAsync(images(args.get("image")), face.build(), options)
                        : sdk.enhanceFaceAsync(image(args.get("image")), face.build(), options);
            }
            case "entails" -> {
                Object hypothesis = value(args.get("hypothesis"), context);
                Object premise = args.has("premise") ? value(args.get("premise"), context) : null;
                yield batched(args.get("image"))
                        ? sdk.entailsAsync(images(args.get("image")), texts(hypothesis), premise == null ? null : texts(premise), options)
                        : sdk.entailsAsync(image(args.get("image")), (String) hypothesis, (String) premise, options);
            }
            case "infer" -> sdk.inferAsync(args.get("model").asText(), inputs(args.get("inputs"), context), parameters(args), options);
            case "metadata" -> sdk.metadataAsync(args.get("model").asText(), options);
            case "submit" -> sdk.submitAsync(args.get("model").asText(), inputs(args.get("inputs"), context), parameters(args),
                    args.has("idempotency_key") ? (String) value(args.get("idempotency_key"), context) : null, options);
            case "get_job" -> sdk.getJobAsync((String) value(args.get("job"), context), options);
            case "cancel" -> sdk.cancelAsync((String) value(args.get("job"), context), options);
            case "wait" -> sdk.waitForAsync((String) value(args.get("job"), context), millis(args, "timeout_ms"), Polling.DEFAULT);
            case "result" -> sdk.resultAsync((String) value(args.get("job"), context), millis(args, "timeout_ms"));
            default -> throw new IllegalArgumentException("unknown call " + method);
        };
    }

    @SuppressWarnings("unchecked")
    private static List<String> texts(Object value) {
        return value instanceof List<?> list ? (List<String>) list : List.of((String) value);
    }

    // ---- reading the results the language-neutral way -------------------------------------------------

    private static Object normal(Object result) {
        if (result instanceof List<?> list) {
            List<Object> items = new ArrayList<>();
            list.forEach(item -> items.add(normal(item)));
            return items;
        }
        if (result instanceof Labels labels) {
            return Map.of("labels", labels.labels(), "scores", labels.scores());
        }
        if (result instanceof EnhancedFace face) {
            Map<String, Object> map = new LinkedHashMap<>();
            map.put("format", face.format());
            map.put("width", face.width());
            map.put("height", face.height());
            map.put("faces", face.faces());
            map.put("quality_score", face.qualityScore());
            map.put("needs_review", face.needsReview());
            map.put("image_sha256", sha256(face.imageBytes()));
            return map;
        }
        if (result instanceof Entailment entailment) {
            return Map.of("label", entailment.label(), "scores", entailment.scores(),
                    "classes", new ArrayList<>(entailment.scores().keySet()));
        }
        if (result instanceof InferResult infer) {
            Map<String, Object> outputs = new LinkedHashMap<>();
            infer.outputs().forEach((name, tensor) -> {
                List<Object> data = new ArrayList<>();
                tensor.data().forEach(value -> data.add(value instanceof byte[] ? Tensor.text(value) : value));
                outputs.put(name, Map.of("datatype", tensor.datatype(), "shape", tensor.shape(),
                        "parameters", tensor.parameters(), "data", data));
            });
            Map<String, Object> map = new LinkedHashMap<>();
            map.put("model_name", infer.modelName());
            map.put("output_names", new ArrayList<>(infer.outputs().keySet()));
            map.put("outputs", outputs);
            return map;
        }
        if (result instanceof Job job) {
            Map<String, Object> map = new LinkedHashMap<>();
            map.put("id", job.id());
            map.put("model", job.model());
            map.put("status", job.status());
            map.put("attempts", job.attempts());
            map.put("has_result", job.result() != null);
            map.put("error", job.error());
            return map;
        }
        return result;
    }

    private static Map<String, Object> normalError(PredictorException error) {
        String kind = error.getClass() == PredictorException.class ? "base" : error.getClass().getSimpleName();
        for (var entry : Errors.BY_CODE.entrySet()) {
            PredictorException sample = entry.getValue().create("", entry.getKey(), null, null, null, null);
            if (sample.getClass() == error.getClass()) {
                kind = entry.getKey();
            }
        }
        Map<String, Object> map = new HashMap<>();
        map.put("class", kind);
        map.put("code", error.code());
        map.put("status", error.status().isPresent() ? error.status().getAsInt() : null);
        map.put("request_id", error.requestId());
        map.put("message", error.getMessage());
        map.put("retry_after", error.retryAfter().map(d -> d.toMillis() / 1000.0).orElse(null));
        return map;
    }

    private static String sha256(byte[] bytes) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
        } catch (NoSuchAlgorithmException impossible) {
            throw new IllegalStateException(impossible);
        }
    }

    // ---- matching -----------------------------------------------------------------------------------

    private static void match(JsonNode pattern, Object actual, Context context, String where) {
        if (pattern.isObject()) {
            List<String> operators = new ArrayList<>();
            pattern.fieldNames().forEachRemaining(name -> {
                if (name.startsWith("$")) operators.add(name);
            });
            if (!operators.isEmpty()) {
                for (String op : operators) {
                    JsonNode expected = pattern.get(op);
                    switch (op) {
                        case "$len" -> match(expected, length(actual, where), context, where + ".length");
                        case "$each" -> {
                            List<?> list = list(actual, where);
                            for (int i = 0; i < list.size(); i++) match(expected, list.get(i), context, where + "[" + i + "]");
                        }
                        case "$first" -> match(expected, list(actual, where).isEmpty() ? null : list(actual, where).get(0), context, where + "[0]");
                        case "$last" -> {
                            List<?> list = list(actual, where);
                            match(expected, list.isEmpty() ? null : list.get(list.size() - 1), context, where + "[-1]");
                        }
                        case "$in" -> {
                            boolean found = false;
                            for (JsonNode candidate : expected) found |= matches(candidate, actual, context);
                            assertTrue(found, where + ": " + actual + " not in " + expected);
                        }
                        case "$gte" -> assertTrue(actual instanceof Number n && n.doubleValue() >= expected.asDouble(), where + ": " + actual + " < " + expected);
                        case "$lt" -> assertTrue(actual instanceof Number n && n.doubleValue() < expected.asDouble(), where + ": " + actual + " >= " + expected);
                        case "$nonempty" -> assertTrue(actual instanceof String s && !s.isEmpty(), where + ": empty or not a string: " + actual);
                        case "$request_id" -> assertEquals(context.requestId, actual, where + ": not the request id sent");
                        case "$saved" -> assertEquals(saved(expected.asText(), context, false), actual, where + ": not the saved " + expected);
                        default -> fail("unknown operator " + op + " at " + where);
                    }
                }
                return;
            }
            assertTrue(actual instanceof Map<?, ?>, where + ": expected an object, got " + actual);
            Map<?, ?> map = (Map<?, ?>) actual;
            pattern.properties().forEach(field -> match(field.getValue(), map.get(field.getKey()), context,
                    where + "." + field.getKey()));
            return;
        }
        if (pattern.isArray()) {
            List<?> list = list(actual, where);
            assertEquals(pattern.size(), list.size(), where + ": length");
            for (int i = 0; i < pattern.size(); i++) match(pattern.get(i), list.get(i), context, where + "[" + i + "]");
            return;
        }
        if (pattern.isNumber()) {
            assertTrue(actual instanceof Number, where + ": expected a number, got " + actual);
            double difference = Math.abs(((Number) actual).doubleValue() - pattern.asDouble());
            assertTrue(difference <= context.tolerance, where + ": " + actual + " is not " + pattern);
            return;
        }
        if (pattern.isNull()) {
            assertEquals(null, actual, where);
            return;
        }
        assertEquals(plainValue(pattern), actual, where);
    }

    private static boolean matches(JsonNode pattern, Object actual, Context context) {
        try {
            match(pattern, actual, context, "$");
            return true;
        } catch (AssertionError mismatch) {
            return false;
        }
    }

    private static List<?> list(Object actual, String where) {
        assertTrue(actual instanceof List<?>, where + ": expected an array, got " + actual);
        return (List<?>) actual;
    }

    private static int length(Object actual, String where) {
        if (actual instanceof String text) return text.length();
        return list(actual, where).size();
    }

    private static Map<String, Object> plain(JsonNode node) {
        return JSON.convertValue(node, new com.fasterxml.jackson.core.type.TypeReference<Map<String, Object>>() { });
    }

    private static Object plainValue(JsonNode node) {
        return JSON.convertValue(node, Object.class);
    }

    // ---- the server's access log ----------------------------------------------------------------------

    private static List<Object> accessLines(Path log, String requestId) throws IOException {
        List<Object> lines = new ArrayList<>();
        for (String raw : Files.readAllLines(log, StandardCharsets.UTF_8)) {
            if (!raw.startsWith("{") || !raw.contains(requestId)) continue;
            try {
                Map<String, Object> line = JSON.readValue(raw, new com.fasterxml.jackson.core.type.TypeReference<Map<String, Object>>() { });
                if ("predictors.access".equals(line.get("logger")) && requestId.equals(line.get("request_id"))) lines.add(line);
            } catch (IOException cut) {
                // a line cut in the middle of its write
            }
        }
        return lines;
    }

    private static void checkAccessLog(JsonNode step, Path log, Context context) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!matches(step.get("access_log"), accessLines(log, context.requestId), context) && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        Thread.sleep(300); // a line more, were there one, would be written by now
        List<Object> lines = accessLines(log, context.requestId);
        match(step.get("access_log"), lines, context, "access_log");
        if (step.has("access_log_gaps_ms")) {
            List<Object> gaps = new ArrayList<>();
            for (int i = 1; i < lines.size(); i++) {
                gaps.add(time(lines.get(i)) - time(lines.get(i - 1)));
            }
            match(step.get("access_log_gaps_ms"), gaps, context, "access_log_gaps_ms");
        }
    }

    private static double time(Object line) {
        OffsetDateTime when = OffsetDateTime.parse((String) ((Map<?, ?>) line).get("time"));
        return when.toInstant().toEpochMilli() + (when.getNano() % 1_000_000) / 1e6;
    }

    // ---- running a step -----------------------------------------------------------------------------

    private void runStep(PredictorsClient sdk, Path log, JsonNode step, int index, Context context) throws Exception {
        context.requestId = step.path("send_request_id").asBoolean(true) ? context.prefix + "." + index : null;
        CallOptions.Builder options = CallOptions.builder();
        if (context.requestId != null) options.requestId(context.requestId);
        if (step.has("timeout_ms")) options.timeout(Duration.ofMillis(step.get("timeout_ms").asLong()));
        if (step.has("traceparent")) options.traceparent(step.get("traceparent").asText());
        JsonNode args = step.get("args");
        if (args.has("model") && !List.of("infer", "submit", "metadata").contains(step.get("call").asText())) {
            options.model(args.get("model").asText());
        }
        long started = System.nanoTime();
        CompletableFuture<?> future = call(sdk, step.get("call").asText(), args, options.build(), context);
        Object result = null;
        Throwable error = null;
        try {
            if (step.has("abort_after_ms")) {
                try {
                    result = future.get(step.get("abort_after_ms").asLong(), TimeUnit.MILLISECONDS);
                } catch (java.util.concurrent.TimeoutException stillRunning) {
                    future.cancel(true);
                    result = future.get();
                }
            } else {
                result = future.get();
            }
        } catch (ExecutionException | CompletionException | CancellationException failed) {
            error = failed instanceof CancellationException ? failed : failed.getCause();
        }
        double elapsed = (System.nanoTime() - started) / 1e6;
        JsonNode expect = step.get("expect");
        if (expect.has("aborted")) {
            assertTrue(error instanceof CancellationException, "not aborted: " + error + " / " + result);
        } else if (expect.has("error")) {
            assertTrue(error instanceof PredictorException, "no PredictorException: " + error + " / " + normal(result));
            Map<String, Object> normal = normalError((PredictorException) error);
            if (context.requestId == null) context.requestId = (String) normal.get("request_id");
            assertTrue(normal.get("message") instanceof String m && !m.isEmpty() && normal.get("request_id") != null,
                    "an error without message or request id: " + normal);
            match(expect.get("error"), normal, context, "error");
        } else {
            if (error != null) throw new AssertionError("the call failed: " + error, error);
            Object normal = normal(result);
            match(expect.get("result"), normal, context, "result");
            if (step.has("save")) context.saved.put(step.get("save").asText(), new Object[] {result, normal});
        }
        if (step.has("elapsed_ms")) match(step.get("elapsed_ms"), elapsed, context, "elapsed_ms");
        if (step.has("access_log")) checkAccessLog(step, log, context);
    }
}
