package io.visionpredictors.client;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Function;

/**
 * A client of one vision-predictors server: {@code PredictorsClient.create("http://localhost:8080")}, or
 * {@link #builder(String)} for its options. Every method has a blocking form and an {@code ...Async} form
 * returning a {@link CompletableFuture}; cancelling that future aborts the call.
 *
 * <p>A call is built once (the request body, the request id, the decoder of the answer) and then sent with
 * one {@link RetryPolicy}, all within one overall deadline; every attempt carries the same
 * {@code X-Request-ID} and the remaining deadline as {@code X-Request-Timeout-Ms}, so the server drops work
 * nobody waits for any more.
 *
 * <p>Thread-safe and immutable: share one client (and its connection pool) across threads. It holds no
 * global state; errors are unchecked ({@link PredictorException}, see there why). A blocking call whose
 * thread is interrupted aborts the call, keeps the thread's interrupt flag and throws
 * {@link CancellationException}.
 */
public final class PredictorsClient {
    static final String IDEMPOTENCY_HEADER = "Idempotency-Key";

    private final Duration timeout;
    private final Protocol protocol;
    private final Map<String, String> headers;
    private final ObjectMapper json = new ObjectMapper();
    private final Wire wire = new Wire(json);
    private final Transport transport;

    private PredictorsClient(Builder builder) {
        this.timeout = builder.timeout;
        this.protocol = builder.protocol;
        this.headers = Map.copyOf(builder.headers);
        HttpClient http = builder.http != null ? builder.http : HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10))
                .build();
        this.transport = new Transport(builder.url.replaceAll("/+$", ""), builder.retryPolicy, http, json);
    }

    /** A client with the defaults: 60 s per call, 3 retries, the binary protocol. */
    public static PredictorsClient create(String url) {
        return builder(url).build();
    }

    public static Builder builder(String url) {
        return new Builder(url);
    }

    // ---- general recognition and classifiers -----------------------------------------------------

    /** Top-5 labels of general recognition. */
    public Labels recognize(Image image) {
        return recognize(image, 5, CallOptions.NONE);
    }

    /** Top-k labels of general recognition. */
    public Labels recognize(Image image, int topK) {
        return recognize(image, topK, CallOptions.NONE);
    }

    public Labels recognize(Image image, int topK, CallOptions options) {
        return await(recognizeAsync(image, topK, options));
    }

    /** One batched request: the labels of each image, in order. */
    public List<Labels> recognize(List<Image> images, int topK, CallOptions options) {
        return await(recognizeAsync(images, topK, options));
    }

    public CompletableFuture<Labels> recognizeAsync(Image image, int topK, CallOptions options) {
        return recognizeAsync(List.of(image), topK, options).thenApply(PredictorsClient::single);
    }

    public CompletableFuture<List<Labels>> recognizeAsync(List<Image> images, int topK, CallOptions options) {
        return labels(images, topK, options.model("general-recognition"), options);
    }

    /** Top-5 labels of the {@code image-classification} model (another with {@link CallOptions.Builder#model}). */
    public Labels classify(Image image) {
        return classify(image, 5, CallOptions.NONE);
    }

    public Labels classify(Image image, int topK) {
        return classify(image, topK, CallOptions.NONE);
    }

    public Labels classify(Image image, int topK, CallOptions options) {
        return await(classifyAsync(image, topK, options));
    }

    public List<Labels> classify(List<Image> images, int topK, CallOptions options) {
        return await(classifyAsync(images, topK, options));
    }

    public CompletableFuture<Labels> classifyAsync(Image image, int topK, CallOptions options) {
        return classifyAsync(List.of(image), topK, options).thenApply(PredictorsClient::single);
    }

    public CompletableFuture<List<Labels>> classifyAsync(List<Image> images, int topK, CallOptions options) {
        return labels(images, topK, options.model("image-classification"), options);
    }

    // ---- face enhancement --------------------------------------------------------------------------

    /** GPEN portrait enhancement with the server's defaults. */
    public EnhancedFace enhanceFace(Image image) {
        return enhanceFace(image, FaceOptions.DEFAULTS, CallOptions.NONE);
    }

    public EnhancedFace enhanceFace(Image image, FaceOptions face) {
        return enhanceFace(image, face, CallOptions.NONE);
    }

    public EnhancedFace enhanceFace(Image image, FaceOptions face, CallOptions options) {
        return await(enhanceFaceAsync(image, face, options));
    }

    public List<EnhancedFace> enhanceFace(List<Image> images, FaceOptions face, CallOptions options) {
        return await(enhanceFaceAsync(images, face, options));
    }

    public CompletableFuture<EnhancedFace> enhanceFaceAsync(Image image, FaceOptions face, CallOptions options) {
        return enhanceFaceAsync(List.of(image), face, options).thenApply(PredictorsClient::single);
    }

    public CompletableFuture<List<EnhancedFace>> enhanceFaceAsync(List<Image> images, FaceOptions face,
                                                                  CallOptions options) {
        return supply(() -> inferAsync(options.model("face-enhancement"), Map.of("image", bytesOf(images)),
                face.parameters(), options).thenApply(EnhancedFace::from));
    }

    // ---- visual entailment -------------------------------------------------------------------------

    /** Whether the image entails the hypothesis. */
    public Entailment entails(Image image, String hypothesis) {
        return entails(image, hypothesis, null, CallOptions.NONE);
    }

    /** Whether the image with the premise ({@code null}: none) entails the hypothesis. */
    public Entailment entails(Image image, String hypothesis, String premise) {
        return entails(image, hypothesis, premise, CallOptions.NONE);
    }

    public Entailment entails(Image image, String hypothesis, String premise, CallOptions options) {
        return await(entailsAsync(image, hypothesis, premise, options));
    }

    /** One batched request: one hypothesis (and premise, or {@code null}) per image. */
    public List<Entailment> entails(List<Image> images, List<String> hypotheses, List<String> premises,
                                    CallOptions options) {
        return await(entailsAsync(images, hypotheses, premises, options));
    }

    public CompletableFuture<Entailment> entailsAsync(Image image, String hypothesis, String premise,
                                                      CallOptions options) {
        return entailsAsync(List.of(image), List.of(hypothesis), premise == null ? null : List.of(premise), options)
                .thenApply(PredictorsClient::single);
    }

    public CompletableFuture<List<Entailment>> entailsAsync(List<Image> images, List<String> hypotheses,
                                                            List<String> premises, CallOptions options) {
        return supply(() -> {
            Map<String, List<?>> inputs = new LinkedHashMap<>();
            inputs.put("image", bytesOf(images));
            inputs.put("hypothesis", column(hypotheses, images.size(), "hypothesis"));
            if (premises != null) {
                inputs.put("premise", column(premises, images.size(), "premise"));
            }
            return inferAsync(options.model("visual-entailment"), inputs, Map.of(), options).thenApply(Entailment::from);
        });
    }

    // ---- any model ---------------------------------------------------------------------------------

    /**
     * Any model: {@code inputs} maps each input name to one element or a {@link List} of them; a
     * {@code String} is text, an {@link Image} or {@code byte[]} binary content.
     */
    public InferResult infer(String model, Map<String, ?> inputs) {
        return infer(model, inputs, Map.of(), CallOptions.NONE);
    }

    public InferResult infer(String model, Map<String, ?> inputs, Map<String, ?> parameters) {
        return infer(model, inputs, parameters, CallOptions.NONE);
    }

    public InferResult infer(String model, Map<String, ?> inputs, Map<String, ?> parameters, CallOptions options) {
        return await(inferAsync(model, inputs, parameters, options));
    }

    public CompletableFuture<InferResult> inferAsync(String model, Map<String, ?> inputs, Map<String, ?> parameters,
                                                     CallOptions options) {
        return supply(() -> {
            Wire.Encoded encoded = wire.encode(columns(inputs), parameters, protocol);
            return transport.run(call("POST", modelPath(model) + "/infer", encoded, Map.of(),
                    answer -> wire.decode(answer.body(), answer.headers().firstValue(Wire.HEADER_LENGTH).orElse(null),
                            answer.requestId()), options, null));
        });
    }

    /** The model's v2 metadata: its inputs and outputs with names, datatypes and shapes. */
    public Map<String, Object> metadata(String model) {
        return await(metadataAsync(model, CallOptions.NONE));
    }

    public CompletableFuture<Map<String, Object>> metadataAsync(String model, CallOptions options) {
        return supply(() -> transport.run(call("GET", modelPath(model), null, Map.of(), this::jsonObject, options, null)));
    }

    // ---- asynchronous jobs (the server needs --jobs-redis-url) -------------------------------------

    /** Queue a job with {@code infer}'s inputs; returns at once with the queued {@link Job}. */
    public Job submit(String model, Map<String, ?> inputs) {
        return submit(model, inputs, Map.of(), null, CallOptions.NONE);
    }

    public Job submit(String model, Map<String, ?> inputs, Map<String, ?> parameters) {
        return submit(model, inputs, parameters, null, CallOptions.NONE);
    }

    /**
     * {@code idempotencyKey}: the same key for the same model is the same job ({@code null}: a fresh key, so that
     * the retries of this call never make a second job).
     */
    public Job submit(String model, Map<String, ?> inputs, Map<String, ?> parameters, String idempotencyKey,
                      CallOptions options) {
        return await(submitAsync(model, inputs, parameters, idempotencyKey, options));
    }

    public CompletableFuture<Job> submitAsync(String model, Map<String, ?> inputs, Map<String, ?> parameters,
                                              String idempotencyKey, CallOptions options) {
        return supply(() -> {
            Wire.Encoded encoded = wire.encode(columns(inputs), parameters, protocol);
            String key = idempotencyKey != null ? idempotencyKey : UUID.randomUUID().toString();
            return transport.run(call("POST", modelPath(model) + "/jobs", encoded, Map.of(IDEMPOTENCY_HEADER, key), this::job,
                    options, null));
        });
    }

    /** The job as it is now. */
    public Job getJob(String jobId) {
        return getJob(jobId, CallOptions.NONE);
    }

    public Job getJob(String jobId, CallOptions options) {
        return await(getJobAsync(jobId, options));
    }

    public CompletableFuture<Job> getJobAsync(String jobId, CallOptions options) {
        return supply(() -> transport.run(call("GET", jobPath(jobId), null, Map.of(), this::job, options, null)));
    }

    /** Cancel a queued or running job (a running one finishes; its result is discarded). */
    public Job cancel(String jobId) {
        return cancel(jobId, CallOptions.NONE);
    }

    public Job cancel(String jobId, CallOptions options) {
        return await(cancelAsync(jobId, options));
    }

    public CompletableFuture<Job> cancelAsync(String jobId, CallOptions options) {
        return supply(() -> transport.run(call("DELETE", jobPath(jobId), null, Map.of(), this::job, options, null)));
    }

    /**
     * The job once it succeeded, failed or was cancelled, within {@code timeout} ({@code null}: the client's);
     * then {@link RequestTimeoutException}. Each request is a long poll, {@code GET /v2/jobs/{id}?wait=W} with W
     * the time left (at most 20 s): the server answers as soon as the job has ended, so a job that ends within
     * W costs one request. ({@code wait} is {@link Object#wait()}'s name in Java.)
     */
    public Job waitFor(String jobId, Duration timeout) {
        return await(waitForAsync(jobId, timeout, Polling.DEFAULT));
    }

    public CompletableFuture<Job> waitForAsync(String jobId, Duration timeout, Polling polling) {
        LongPolls polls = new LongPolls(jobId, timeout != null ? timeout : this.timeout, polling);
        CompletableFuture<Job> result = new CompletableFuture<>();
        AtomicReference<Future<?>> inFlight = new AtomicReference<>();
        result.whenComplete((job, error) -> Transport.cancelIfCancelled(result, inFlight));
        poll(polls, null, result, inFlight);
        return result;
    }

    /** The job's result once it has one ({@link #waitFor}); a failed job's error thrown as its exception. */
    public InferResult result(String jobId, Duration timeout) {
        return await(resultAsync(jobId, timeout));
    }

    public CompletableFuture<InferResult> resultAsync(String jobId, Duration timeout) {
        return waitForAsync(jobId, timeout, Polling.DEFAULT).thenApply(this::outcome);
    }

    // ---- building and sending calls ----------------------------------------------------------------

    private CompletableFuture<List<Labels>> labels(List<Image> images, int topK, String model, CallOptions options) {
        return supply(() -> inferAsync(model, Map.of("image", bytesOf(images)), Map.of("top_k", topK), options)
                .thenApply(Labels::from));
    }

    private <T> Transport.Call<T> call(String method, String path, Wire.Encoded encoded, Map<String, String> extra,
                                       Function<Transport.Answer, T> decode, CallOptions options, Long budgetNanos) {
        Map<String, String> all = new LinkedHashMap<>(headers);
        if (encoded != null) {
            all.putAll(encoded.headers());
        }
        all.putAll(extra);
        all.putAll(options.headers());
        long budget = budgetNanos != null ? budgetNanos
                : (options.timeout() != null ? options.timeout() : timeout).toNanos();
        String requestId = options.requestId() != null ? options.requestId()
                : UUID.randomUUID().toString().replace("-", "");
        return new Transport.Call<>(method, path, encoded == null ? null : encoded.body(), Collections.unmodifiableMap(all),
                decode, requestId, budget);
    }

    private Map<String, Object> jsonObject(Transport.Answer answer) {
        try {
            return json.readValue(answer.body(), Transport.JSON_OBJECT);
        } catch (IOException error) {
            throw Errors.unexpected("not JSON: " + error.getMessage(), answer.status(), answer.requestId(), error);
        }
    }

    @SuppressWarnings("unchecked")
    private Job job(Transport.Answer answer) {
        Map<String, Object> document = jsonObject(answer);
        if (!(document.get("id") instanceof String id) || !(document.get("status") instanceof String status)) {
            throw Errors.unexpected("not a job document: " + document, answer.status(), answer.requestId(), null);
        }
        Object attempts = document.get("attempts");
        return new Job(id, String.valueOf(document.getOrDefault("model", "")), status,
                String.valueOf(document.getOrDefault("created_at", "")), (String) document.get("started_at"),
                (String) document.get("finished_at"), attempts instanceof Number n ? n.intValue() : 0,
                (Map<String, Object>) document.get("result"), (Map<String, Object>) document.get("error"));
    }

    private InferResult outcome(Job job) {
        if ("succeeded".equals(job.status()) && job.result() != null) {
            return wire.decode(json.valueToTree(job.result()), new byte[0], 0, job.id());
        }
        if ("cancelled".equals(job.status())) {
            throw new JobCancelledException("job " + job.id() + " was cancelled: it has no result", "JOB_CANCELLED",
                    null, job.id(), null, null);
        }
        if ("failed".equals(job.status()) && job.error() != null) {
            String code = String.valueOf(job.error().getOrDefault("code", "ERROR"));
            throw Errors.of(code, String.valueOf(job.error().getOrDefault("error", "")), Errors.STATUS_BY_CODE.get(code),
                    job.id(), null);
        }
        throw Errors.unexpected("job " + job.id() + " is " + job.status() + ", without a result or an error", null,
                job.id(), null);
    }

    // ---- long polls --------------------------------------------------------------------------------

    private void poll(LongPolls polls, Job current, CompletableFuture<Job> result, AtomicReference<Future<?>> inFlight) {
        if (result.isDone()) {
            return;
        }
        long hold;
        try {
            hold = polls.hold(current);
        } catch (RequestTimeoutException timedOut) {
            result.completeExceptionally(timedOut);
            return;
        }
        // the whole time left (not just the hold) for the poll's own retries, plus a grace for its answer
        long budget = Math.max(hold, polls.deadline - System.nanoTime()) + LongPolls.GRACE_NANOS;
        CompletableFuture<Job> request = transport.run(call("GET", polls.path(hold), null, Map.of(), this::job, CallOptions.NONE,
                budget));
        inFlight.set(request);
        request.whenComplete((job, error) -> {
            if (error != null) {
                result.completeExceptionally(Transport.unwrap(error));
            } else if (job.done()) {
                result.complete(job);
            } else {
                CompletableFuture.delayedExecutor(polls.pause(), TimeUnit.NANOSECONDS)
                        .execute(() -> poll(polls, job, result, inFlight));
            }
        });
    }

    // ---- helpers -----------------------------------------------------------------------------------

    /** Runs {@code start} and flattens its future; what it throws before sending fails the future. */
    private static <T> CompletableFuture<T> supply(java.util.function.Supplier<CompletableFuture<T>> start) {
        try {
            return start.get();
        } catch (RuntimeException error) {
            return CompletableFuture.failedFuture(error);
        }
    }

    private static <T> T await(CompletableFuture<T> future) {
        try {
            return future.get();
        } catch (InterruptedException interrupted) {
            future.cancel(true);
            Thread.currentThread().interrupt();
            CancellationException cancelled = new CancellationException("interrupted: the call was aborted");
            cancelled.initCause(interrupted);
            throw cancelled;
        } catch (ExecutionException failed) {
            Throwable cause = failed.getCause();
            if (cause instanceof RuntimeException runtime) {
                throw runtime;
            }
            if (cause instanceof Error error) {
                throw error;
            }
            throw new CompletionException(cause);
        }
    }

    private static <T> T single(List<T> items) {
        return items.get(0);
    }

    private static List<byte[]> bytesOf(List<Image> images) {
        List<byte[]> bytes = new ArrayList<>(images.size());
        for (Image image : images) {
            bytes.add(image.bytes());
        }
        return bytes;
    }

    private static List<String> column(List<String> values, int count, String name) {
        if (values.size() == 1 && count > 1) {
            return Collections.nCopies(count, values.get(0));
        }
        if (values.size() != count) {
            throw new IllegalArgumentException(values.size() + " " + name + " values for " + count + " images");
        }
        return values;
    }

    /** Each input's elements: a {@code String} stays text, an {@link Image} or {@code byte[]} is binary content. */
    private static Map<String, List<Object>> columns(Map<String, ?> inputs) {
        Map<String, List<Object>> columns = new LinkedHashMap<>();
        inputs.forEach((name, value) -> {
            List<?> values = value instanceof List<?> list ? list : List.of(value);
            List<Object> elements = new ArrayList<>(values.size());
            for (Object element : values) {
                if (element instanceof String || element instanceof byte[]) {
                    elements.add(element);
                } else if (element instanceof Image image) {
                    elements.add(image.bytes());
                } else {
                    throw new IllegalArgumentException("input '" + name + "': give a String (text), an Image or byte[], not "
                            + (element == null ? "null" : element.getClass().getName()));
                }
            }
            columns.put(name, elements);
        });
        return columns;
    }

    private static String modelPath(String model) {
        return "/v2/models/" + URLEncoder.encode(model, StandardCharsets.UTF_8);
    }

    static String jobPath(String jobId) {
        return "/v2/jobs/" + URLEncoder.encode(jobId, StandardCharsets.UTF_8);
    }

    /** Builds a {@link PredictorsClient}. */
    public static final class Builder {
        private final String url;
        private Duration timeout = Duration.ofSeconds(60);
        private Protocol protocol = Protocol.BINARY;
        private RetryPolicy retryPolicy = RetryPolicy.DEFAULT;
        private final Map<String, String> headers = new LinkedHashMap<>();
        private HttpClient http;

        private Builder(String url) {
            this.url = Objects.requireNonNull(url, "url");
        }

        /** Each call's overall deadline, retries included, unless the call gives its own (default 60 s). */
        public Builder timeout(Duration timeout) {
            if (timeout.isNegative() || timeout.isZero()) {
                throw new IllegalArgumentException("the timeout must be positive");
            }
            this.timeout = timeout;
            return this;
        }

        /** Further attempts of a call at most (default 3), with the default back-off. */
        public Builder retries(int retries) {
            this.retryPolicy = RetryPolicy.ofRetries(retries);
            return this;
        }

        public Builder retryPolicy(RetryPolicy retryPolicy) {
            this.retryPolicy = Objects.requireNonNull(retryPolicy, "retryPolicy");
            return this;
        }

        public Builder protocol(Protocol protocol) {
            this.protocol = Objects.requireNonNull(protocol, "protocol");
            return this;
        }

        /** A header sent with every request (an API key for a gateway, ...). */
        public Builder header(String name, String value) {
            headers.put(Objects.requireNonNull(name, "name"), Objects.requireNonNull(value, "value"));
            return this;
        }

        /** The {@link HttpClient} to use (a proxy, TLS, an executor of yours); default: HTTP/1.1, 10 s to connect. */
        public Builder httpClient(HttpClient http) {
            this.http = Objects.requireNonNull(http, "http");
            return this;
        }

        public PredictorsClient build() {
            return new PredictorsClient(this);
        }
    }
}
