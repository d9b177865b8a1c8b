/**
 * `Client`: every call is built once (the request body, the request id, the decoder of the answer) and then
 * sent with one retry policy: another attempt on 503 `SERVICE_BUSY` / `MODEL_NOT_READY` / `JOBS_UNAVAILABLE`
 * and on connection failures, after `Retry-After` when the server gives one, else after a jittered
 * exponential back-off, all within one overall deadline; never on another status (4xx, 500, 504). Every
 * attempt carries the same `X-Request-ID`, so the server's logs show one request retried, and the remaining
 * deadline as `X-Request-Timeout-Ms`, so the server drops work nobody waits for any more.
 */

import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import {
  ConnectionFailedError,
  PredictorError,
  RETRYABLE_CODES,
  TimeoutError,
  UnexpectedResponseError,
  errorFor,
} from "./errors.js";
import { type ImageInput, encodeImages, imageBytes } from "./images.js";
import { type Job, LONG_POLL_GRACE_MS, LongPolls, type Polling, jobFrom, jobId, outcome } from "./jobs.js";
import { type EnhancedFace, type Entailment, type Labels, entailmentsFrom, facesFrom, labelsFrom } from "./results.js";
import { type Element, HEADER_LENGTH, type InferResult, type Protocol, decodeResponse, encodeRequest } from "./wire.js";

export const REQUEST_ID_HEADER = "X-Request-ID";
export const TIMEOUT_HEADER = "X-Request-Timeout-Ms";
export const IDEMPOTENCY_HEADER = "Idempotency-Key";
/**
 * How much longer than the deadline an attempt waits for its answer, so that the server's own 504 (with its
 * request id) arrives instead of a client-side cut-off.
 */
const ANSWER_GRACE_MS = 250;

/** `retries` further attempts at most; back-off `backoffBaseMs * 2**attempt` (full jitter), capped. */
export class RetryPolicy {
  readonly retries: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;

  constructor({ retries = 3, backoffBaseMs = 100, backoffMaxMs = 5000 }: Partial<RetryPolicy> = {}) {
    if (retries < 0 || backoffBaseMs < 0 || backoffMaxMs < 0) {
      throw new RangeError("retries and back-off times must not be negative");
    }
    this.retries = retries;
    this.backoffBaseMs = backoffBaseMs;
    this.backoffMaxMs = backoffMaxMs;
  }

  /** Milliseconds to wait before attempt `attempt + 1`, or null to give up and throw `error`. */
  delay(attempt: number, error: PredictorError, remainingMs: number): number | null {
    const retryable = error instanceof ConnectionFailedError || (error.status === 503 && RETRYABLE_CODES.has(error.code));
    if (!retryable || attempt >= this.retries) {
      return null;
    }
    let delay = Math.random() * Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** attempt);
    if (error.retryAfter !== null) {
      // at least what the server asked for; spread a little so waiting clients do not return together
      delay = Math.max(delay, error.retryAfter * 1000 * (1 + 0.1 * Math.random()));
    }
    return delay < remainingMs ? delay : null;
  }
}

export interface ClientOptions {
  /** Each call's overall deadline in ms, retries included, unless the call gives `timeoutMs` (default 60 000). */
  timeoutMs?: number;
  /** Further attempts of a call at most (default 3); `retryPolicy` sets the back-off too. */
  retries?: number;
  retryPolicy?: RetryPolicy;
  /** `binary` (the v2 binary tensor extension, default) or `json` (v2 JSON, images base64-encoded). */
  protocol?: Protocol;
  /** Headers sent with every request (an API key for a gateway, ...). */
  headers?: Record<string, string>;
  /** The fetch to use (default: Node's own), e.g. undici's with a proxy or TLS dispatcher. */
  fetch?: typeof fetch;
}

/** What every call takes. */
export interface CallOptions {
  /** Sent as `X-Request-ID` on every attempt (default: a fresh id); errors carry it. */
  requestId?: string;
  /** This call's deadline in ms, retries included, also sent to the server as `X-Request-Timeout-Ms`. */
  timeoutMs?: number;
  /** Aborts the call: it rejects with the signal's reason. */
  signal?: AbortSignal;
  /** The W3C trace context of the caller's span, so the server's spans join its trace. */
  traceparent?: string;
  tracestate?: string;
  /** Headers for this call only. */
  headers?: Record<string, string>;
}

export interface LabelsOptions extends CallOptions {
  /** How many labels (1..100, default 5). */
  topK?: number;
  /** The served model's name (default `general-recognition` for `recognize`, `image-classification` for `classify`). */
  model?: string;
}

export interface FaceOptions extends CallOptions {
  /** `jpeg` or `png`; left out: the server's default (JPEG). */
  outputFormat?: string;
  jpegQuality?: number;
  requireFace?: boolean;
  upscale?: boolean;
  model?: string;
}

export interface EntailOptions extends CallOptions {
  /** One premise for every image, or one per image. */
  premise?: string | readonly string[];
  model?: string;
}

export interface InferOptions extends CallOptions {
  parameters?: Record<string, unknown>;
}

export interface SubmitOptions extends InferOptions {
  /** The same key for the same model is the same job (default: a fresh key, so retries never make a second job). */
  idempotencyKey?: string;
}

export interface WaitOptions {
  /** How long to wait in ms (default: the client's `timeoutMs`); then a `TimeoutError`. */
  timeoutMs?: number;
  polling?: Polling;
  signal?: AbortSignal;
}

/**
 * The inputs of `infer` and `submit`: each input name to one element or an array of them; a string is text,
 * anything else binary content (bytes, a Blob, a stream, or `imageFile(path)` for a file's bytes).
 */
export type Inputs = Record<string, InputElement | readonly InputElement[]>;
export type InputElement = string | Exclude<ImageInput, string>;

interface Answer {
  status: number;
  headers: Headers;
  body: Uint8Array;
  requestId: string;
}

interface Call<T> {
  method: string;
  path: string;
  body: Uint8Array | null;
  headers: Record<string, string>;
  decode: (answer: Answer) => T;
  requestId: string;
  budgetMs: number;
  signal: AbortSignal | undefined;
}

type Many<I, T> = I extends readonly unknown[] ? T[] : T;

/** A client of one vision-predictors server. Safe to share: it holds no per-call state. */
export class Client {
  readonly url: string;
  readonly timeoutMs: number;
  readonly protocol: Protocol;
  readonly retryPolicy: RetryPolicy;
  private readonly headers: Record<string, string>;
  private readonly fetch: typeof fetch;

  constructor(url: string, options: ClientOptions = {}) {
    const protocol = options.protocol ?? "binary";
    if (protocol !== "binary" && protocol !== "json") {
      throw new RangeError(`protocol must be 'binary' or 'json', got '${String(protocol)}'`);
    }
    this.url = url.replace(/\/+$/, "");
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.protocol = protocol;
    this.retryPolicy = options.retryPolicy ?? new RetryPolicy({ retries: options.retries ?? 3 });
    this.headers = { ...options.headers };
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  /** Top-k labels of general recognition: `Labels`, or an array of them for an array of images. */
  async recognize<I extends ImageInput | readonly ImageInput[]>(image: I, options: LabelsOptions = {}): Promise<Many<I, Labels>> {
    return this.labels(image, options.model ?? "general-recognition", options) as Promise<Many<I, Labels>>;
  }

  /** Top-k labels of a classifier: `Labels`, or an array of them for an array of images. */
  async classify<I extends ImageInput | readonly ImageInput[]>(image: I, options: LabelsOptions = {}): Promise<Many<I, Labels>> {
    return this.labels(image, options.model ?? "image-classification", options) as Promise<Many<I, Labels>>;
  }

  /**
   * GPEN portrait enhancement: `EnhancedFace`, or an array of them. Options left out take the server's
   * defaults (JPEG at quality 95, requireFace, upscale).
   */
  async enhanceFace<I extends ImageInput | readonly ImageInput[]>(image: I, options: FaceOptions = {}): Promise<Many<I, EnhancedFace>> {
    const [images, batched] = await encodeImages(image);
    const parameters = definedOnly({ output_format: options.outputFormat, jpeg_quality: options.jpegQuality,
      require_face: options.requireFace, upscale: options.upscale });
    const result = await this.run(this.inferCall(options.model ?? "face-enhancement", new Map([["image", images]]),
      parameters, options));
    return pick(facesFrom(result), batched) as Many<I, EnhancedFace>;
  }

  /** Visual entailment: `Entailment`, or an array of them (one hypothesis for all, or one per image). */
  async entails<I extends ImageInput | readonly ImageInput[]>(image: I, hypothesis: string | readonly string[],
    options: EntailOptions = {}): Promise<Many<I, Entailment>> {
    const [images, batched] = await encodeImages(image);
    const inputs = new Map<string, Element[]>([["image", images], ["hypothesis", column(hypothesis, images.length, "hypothesis")]]);
    if (options.premise !== undefined) {
      inputs.set("premise", column(options.premise, images.length, "premise"));
    }
    const result = await this.run(this.inferCall(options.model ?? "visual-entailment", inputs, {}, options));
    return pick(entailmentsFrom(result), batched) as Many<I, Entailment>;
  }

  /** Any model: `inputs` maps each input name to its elements (a string is text, else binary content). */
  async infer(model: string, inputs: Inputs, options: InferOptions = {}): Promise<InferResult> {
    return this.run(this.inferCall(model, await columns(inputs), options.parameters ?? {}, options));
  }

  /** The model's v2 metadata: its inputs and outputs with names, datatypes and shapes. */
  async metadata(model: string, options: CallOptions = {}): Promise<Record<string, unknown>> {
    return this.run(this.call("GET", modelPath(model), null, {}, decodeJson, options));
  }

  // ---- asynchronous jobs (the server needs --jobs-redis-url) ------------------------------------

  /** Queue a job with `infer`'s inputs and parameters; resolves at once with the queued `Job`. */
  async submit(model: string, inputs: Inputs, options: SubmitOptions = {}): Promise<Job> {
    const encoded = encodeRequest(await columns(inputs), options.parameters ?? {}, this.protocol);
    // Always a key: a retried submit (its answer lost, or 503 after Redis took it) is then the same job.
    const headers = { ...encoded.headers, [IDEMPOTENCY_HEADER]: options.idempotencyKey ?? randomUUID() };
    return this.run(this.call("POST", `${modelPath(model)}/jobs`, encoded.body, headers, decodeJob, options));
  }

  /** The job as it is now. */
  async getJob(job: Job | string, options: CallOptions = {}): Promise<Job> {
    return this.run(this.call("GET", `/v2/jobs/${encodeURIComponent(jobId(job))}`, null, {}, decodeJob, options));
  }

  /** Cancel a queued or running job (a running one finishes; its result is discarded). */
  async cancel(job: Job | string, options: CallOptions = {}): Promise<Job> {
    return this.run(this.call("DELETE", `/v2/jobs/${encodeURIComponent(jobId(job))}`, null, {}, decodeJob, options));
  }

  /**
   * The job once it succeeded, failed or was cancelled (at most `timeoutMs`, default the client's; then a
   * `TimeoutError`). Each request is a long poll, `GET /v2/jobs/{id}?wait=W` with W the time left (at most
   * 20 s): the server answers as soon as the job has ended, so a job that ends within W costs one request.
   */
  async wait(job: Job | string, options: WaitOptions = {}): Promise<Job> {
    const polls = new LongPolls(job, options.timeoutMs ?? this.timeoutMs, options.polling);
    let current = typeof job === "string" ? null : job;
    while (current === null || !current.done) {
      const holdMs = polls.hold(current);
      // the whole time left (not just the hold) for the poll's own retries, plus a grace for its answer
      const budgetMs = Math.max(holdMs, polls.deadline - performance.now()) + LONG_POLL_GRACE_MS;
      current = await this.run(this.call("GET", polls.path(holdMs), null, {}, decodeJob,
        { timeoutMs: budgetMs, signal: options.signal }));
      if (!current.done) {
        await pause(polls.pause(), options.signal);
      }
    }
    return current;
  }

  /** The job's result once it has one (`wait`); a failed job's error thrown as the usual error. */
  async result(job: Job | string, options: WaitOptions = {}): Promise<InferResult> {
    return outcome(await this.wait(job, options));
  }

  // ---- building and sending calls ------------------------------------------------------------------

  private async labels(image: ImageInput | readonly ImageInput[], model: string,
    options: LabelsOptions): Promise<Labels | Labels[]> {
    const [images, batched] = await encodeImages(image);
    const parameters = definedOnly({ top_k: options.topK });
    const result = await this.run(this.inferCall(model, new Map([["image", images]]), parameters, options));
    return pick(labelsFrom(result), batched);
  }

  private inferCall(model: string, inputs: ReadonlyMap<string, Element[]>, parameters: Record<string, unknown>,
    options: CallOptions): Call<InferResult> {
    const encoded = encodeRequest(inputs, parameters, this.protocol);
    return this.call("POST", `${modelPath(model)}/infer`, encoded.body, encoded.headers,
      (answer) => decodeResponse(answer.body, answer.headers.get(HEADER_LENGTH), answer.requestId), options);
  }

  private call<T>(method: string, path: string, body: Uint8Array | null, headers: Record<string, string>,
    decode: (answer: Answer) => T, options: CallOptions): Call<T> {
    const budgetMs = options.timeoutMs ?? this.timeoutMs;
    if (!(budgetMs > 0)) {
      throw new RangeError("timeoutMs must be positive");
    }
    const trace = definedOnly({ traceparent: options.traceparent, tracestate: options.tracestate }) as Record<string, string>;
    return {
      method, path, body, decode, budgetMs, signal: options.signal,
      headers: { ...this.headers, ...headers, ...options.headers, ...trace },
      requestId: options.requestId ?? randomUUID().replaceAll("-", ""),
    };
  }

  private async run<T>(call: Call<T>): Promise<T> {
    call.signal?.throwIfAborted();
    const deadline = performance.now() + call.budgetMs;
    let last: PredictorError | null = null;
    for (let attempt = 0; ; attempt++) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        // a retry's wait that overran the deadline (by a timer's slack): the last attempt's error stands
        throw last ?? new TimeoutError(`the call's deadline of ${call.budgetMs} ms passed`, { requestId: call.requestId });
      }
      const outcome = await this.attempt(call, remaining);
      if (!(outcome instanceof PredictorError)) {
        return outcome.value;
      }
      last = outcome;
      const delay = this.retryPolicy.delay(attempt, outcome, deadline - performance.now());
      if (delay === null) {
        throw outcome;
      }
      await pause(delay, call.signal);
    }
  }

  /** One attempt: the decoded answer, or the error it came to (thrown only when the caller aborted). */
  private async attempt<T>(call: Call<T>, remainingMs: number): Promise<{ value: T } | PredictorError> {
    const timeout = AbortSignal.timeout(Math.ceil(remainingMs + ANSWER_GRACE_MS));
    const signal = call.signal ? AbortSignal.any([call.signal, timeout]) : timeout;
    const headers = { ...call.headers, [REQUEST_ID_HEADER]: call.requestId,
      [TIMEOUT_HEADER]: String(Math.max(1, Math.floor(remainingMs))) };
    let answer: Answer;
    try {
      const response = await this.fetch(this.url + call.path,
        // (a Uint8Array is a valid body; the DOM typings want one on an ArrayBuffer, not a SharedArrayBuffer)
        { method: call.method, body: call.body as BodyInit | null, headers, signal });
      const body = new Uint8Array(await response.arrayBuffer());
      answer = { status: response.status, headers: response.headers, body,
        requestId: response.headers.get(REQUEST_ID_HEADER) ?? call.requestId };
    } catch (error) {
      if (call.signal?.aborted) {
        throw call.signal.reason;
      }
      if (timeout.aborted) {
        return new TimeoutError(`no answer within the call's deadline of ${call.budgetMs} ms`,
          { requestId: call.requestId, cause: error });
      }
      return new ConnectionFailedError(`${call.method} ${this.url}${call.path}: ${describe(error)}`,
        { requestId: call.requestId, cause: error });
    }
    if (answer.status === 200 || answer.status === 202) {
      try {
        return { value: call.decode(answer) };
      } catch (error) {
        if (error instanceof PredictorError) {
          return error;
        }
        throw error;
      }
    }
    return errorFromAnswer(answer, call.requestId);
  }
}

/** The server's error body: `{"error", "code", "request_id"}`. */
interface ErrorBody {
  code?: unknown;
  error?: unknown;
  request_id?: unknown;
}

function errorFromAnswer(answer: Answer, requestId: string): PredictorError {
  const retryAfter = parseRetryAfter(answer.headers.get("retry-after"));
  const text = new TextDecoder().decode(answer.body);
  let body: ErrorBody | null;
  try {
    body = JSON.parse(text) as ErrorBody | null;
  } catch {
    body = null;
  }
  if (body === null || typeof body !== "object" || typeof body.code !== "string") {
    return new UnexpectedResponseError(`HTTP ${answer.status}: ${JSON.stringify(text.slice(0, 300))}`,
      { status: answer.status, requestId: answer.requestId, retryAfter });
  }
  const answeredId = typeof body.request_id === "string" && body.request_id ? body.request_id : answer.requestId;
  return errorFor(body.code, String(body.error ?? ""), { status: answer.status, requestId: answeredId ?? requestId, retryAfter });
}

/** `Retry-After` in seconds: a number of seconds or an HTTP date. */
export function parseRetryAfter(value: string | null): number | null {
  if (!value) {
    return null;
  }
  const seconds = Number(value);
  if (Number.isFinite(seconds)) {
    return Math.max(0, seconds);
  }
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

function decodeJson(answer: Answer): Record<string, unknown> {
  try {
    return JSON.parse(new TextDecoder().decode(answer.body)) as Record<string, unknown>;
  } catch (error) {
    throw new UnexpectedResponseError(`not JSON: ${String(error)}`, { status: answer.status, requestId: answer.requestId });
  }
}

function decodeJob(answer: Answer): Job {
  return jobFrom(decodeJson(answer), answer.status, answer.requestId);
}

function describe(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } } | null)?.cause;
  return cause?.code ?? cause?.message ?? String(error);
}

async function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms <= 0) {
    return;
  }
  try {
    await sleep(ms, undefined, { signal });
  } catch (error) {
    throw signal?.aborted ? signal.reason : error;
  }
}

function modelPath(model: string): string {
  return `/v2/models/${encodeURIComponent(model)}`;
}

function pick<T>(values: T[], batched: boolean): T | T[] {
  return batched ? values : values[0]!;
}

function definedOnly(values: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined));
}

function column(value: string | readonly string[], count: number, name: string): string[] {
  if (typeof value === "string") {
    return Array.from({ length: count }, () => value);
  }
  if (value.length !== count) {
    throw new RangeError(`${value.length} ${name} values for ${count} images`);
  }
  return [...value];
}

async function columns(inputs: Inputs): Promise<Map<string, Element[]>> {
  const result = new Map<string, Element[]>();
  for (const [name, value] of Object.entries(inputs)) {
    const values = Array.isArray(value) ? (value as readonly InputElement[]) : [value as InputElement];
    // a string is text; anything else is binary content
    result.set(name, await Promise.all(values.map((v) => (typeof v === "string" ? v : imageBytes(v)))));
  }
  return result;
}
