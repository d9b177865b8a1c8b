// The SDK against the shared test vectors (clients/conformance/vectors.json) and the real server.
//
// The suite (tests/integration/test_conformance.py) starts the servers, resolves the vectors' references
// and runs `npm test` with CONFORMANCE_VECTORS (the resolved vectors), CONFORMANCE_SERVERS (name -> url and
// log file), CONFORMANCE_IMAGES (the images' directory) and CONFORMANCE_RUN (a prefix for request ids).
// clients/conformance/README.md defines what a vector means; this file is its TypeScript reading.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createReadStream, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { test } from "node:test";

import * as sdk from "../dist/index.js";

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: the vectors run against servers the suite starts (pytest tests/integration/test_conformance.py)`);
  }
  return value;
};

const document = JSON.parse(readFileSync(env("CONFORMANCE_VECTORS"), "utf8"));
const servers = JSON.parse(env("CONFORMANCE_SERVERS"));
const imagesDir = env("CONFORMANCE_IMAGES");
const run = env("CONFORMANCE_RUN");

// ---- building the arguments ----------------------------------------------------------------------

/** A vector's image as this SDK takes it: `inInputs` when it is an element of infer's inputs. */
function image(spec, inInputs, position) {
  if (spec.zeros !== undefined) {
    return new Uint8Array(spec.zeros);
  }
  const path = join(imagesDir, spec.file);
  switch (spec.as ?? "bytes") {
    case "path":
      return inInputs ? sdk.imageFile(path) : path;
    case "bytes": // a Buffer, and a plain Uint8Array every other time
      return position % 2 === 0 ? readFileSync(path) : new Uint8Array(readFileSync(path));
    case "stream": // a Node Readable, and a web ReadableStream every other time
      return position % 2 === 0 ? createReadStream(path) : Readable.toWeb(createReadStream(path));
    case "blob":
      return new Blob([readFileSync(path)]);
    default:
      throw new Error(`unknown image kind ${spec.as}`);
  }
}

function images(spec, inInputs = false) {
  if (Array.isArray(spec)) {
    return spec.map((one, i) => image(one, inInputs, i));
  }
  if (spec.times !== undefined) {
    return Array.from({ length: spec.times }, (_, i) => image(spec, inInputs, i));
  }
  return image(spec, inInputs, 0);
}

function value(spec, context) {
  if (spec !== null && typeof spec === "object" && !Array.isArray(spec)) {
    if ("$saved" in spec) return saved(spec.$saved, context, true);
    if ("$unique" in spec) return `${context.prefix}.${spec.$unique}`;
    if ("text" in spec) return spec.text.repeat(spec.times ?? 1);
    if ("file" in spec || "zeros" in spec) return images(spec, true);
  }
  if (Array.isArray(spec)) return spec.map((one) => value(one, context));
  return spec;
}

function saved(path, context, raw) {
  const [name, ...fields] = path.split(".");
  assert.ok(name in context.saved, `nothing saved as ${name}`);
  let found = raw && fields.length === 0 ? context.saved[name].raw : context.saved[name].normal;
  for (const field of fields) found = found[field];
  return found;
}

function inputs(spec, context) {
  return Object.fromEntries(Object.entries(spec).map(([name, v]) => [name, value(v, context)]));
}

const METHODS = {
  recognize: (c, a, o) => c.recognize(images(a.image), { ...o, topK: a.top_k, model: a.model }),
  classify: (c, a, o) => c.classify(images(a.image), { ...o, topK: a.top_k, model: a.model }),
  enhance_face: (c, a, o) => c.enhanceFace(images(a.image), { ...o, model: a.model, outputFormat: a.output_format,
    jpegQuality: a.jpeg_quality, requireFace: a.require_face, upscale: a.upscale }),
  entails: (c, a, o, ctx) => c.entails(images(a.image), value(a.hypothesis, ctx), { ...o, premise: a.premise, model: a.model }),
  infer: (c, a, o, ctx) => c.infer(a.model, inputs(a.inputs, ctx), { ...o, parameters: a.parameters }),
  metadata: (c, a, o) => c.metadata(a.model, o),
  submit: (c, a, o, ctx) => c.submit(a.model, inputs(a.inputs, ctx), { ...o, parameters: a.parameters,
    idempotencyKey: a.idempotency_key === undefined ? undefined : value(a.idempotency_key, ctx) }),
  get_job: (c, a, o, ctx) => c.getJob(value(a.job, ctx), o),
  cancel: (c, a, o, ctx) => c.cancel(value(a.job, ctx), o),
  wait: (c, a, o, ctx) => c.wait(value(a.job, ctx), { timeoutMs: a.timeout_ms, signal: o.signal }),
  result: (c, a, o, ctx) => c.result(value(a.job, ctx), { timeoutMs: a.timeout_ms, signal: o.signal }),
};

// ---- reading the results the language-neutral way -------------------------------------------------

const text = (v) => (v instanceof Uint8Array ? new TextDecoder().decode(v) : typeof v === "bigint" ? Number(v) : v);

function normal(result) {
  if (Array.isArray(result)) return result.map(normal);
  if (result instanceof sdk.EnhancedFace) {
    return { format: result.format, width: result.width, height: result.height, faces: result.faces,
      quality_score: result.qualityScore, needs_review: result.needsReview,
      image_sha256: createHash("sha256").update(result.imageBytes).digest("hex") };
  }
  if (result instanceof sdk.InferResult) {
    const outputs = Object.fromEntries([...result.outputs].map(([name, t]) => [name,
      { datatype: t.datatype, shape: t.shape, parameters: t.parameters, data: t.data.map(text) }]));
    return { model_name: result.modelName, output_names: [...result.outputs.keys()], outputs };
  }
  if (result && typeof result === "object" && "done" in result && "createdAt" in result) {
    return { id: result.id, model: result.model, status: result.status, attempts: result.attempts,
      has_result: result.result !== null, error: result.error };
  }
  if (result && typeof result === "object" && "label" in result && "scores" in result) {
    return { label: result.label, scores: result.scores, classes: Object.keys(result.scores) };
  }
  return result;
}

const CLASSES = Object.entries(sdk.ERRORS_BY_CODE);

function normalError(error) {
  assert.ok(error instanceof sdk.PredictorError, `not a PredictorError: ${error?.stack ?? error}`);
  const known = CLASSES.find(([, cls]) => error.constructor === cls);
  return { class: known ? known[0] : error.constructor === sdk.PredictorError ? "base" : error.constructor.name,
    code: error.code, status: error.status, request_id: error.requestId, message: error.message,
    retry_after: error.retryAfter };
}

// ---- matching -----------------------------------------------------------------------------------

function match(pattern, actual, context, where = "$") {
  if (pattern !== null && typeof pattern === "object" && !Array.isArray(pattern)) {
    const operators = Object.keys(pattern).filter((key) => key.startsWith("$"));
    if (operators.length > 0) {
      for (const op of operators) {
        const expected = pattern[op];
        switch (op) {
          case "$len":
            assert.ok(actual !== null && actual !== undefined && "length" in Object(actual), `${where}: no length in ${JSON.stringify(actual)}`);
            match(expected, actual.length, context, `${where}.length`);
            break;
          case "$each":
            actual.forEach((one, i) => match(expected, one, context, `${where}[${i}]`));
            break;
          case "$first":
            match(expected, actual[0], context, `${where}[0]`);
            break;
          case "$last":
            match(expected, actual.at(-1), context, `${where}[-1]`);
            break;
          case "$in":
            assert.ok(expected.some((candidate) => matches(candidate, actual, context)), `${where}: ${JSON.stringify(actual)} not in ${JSON.stringify(expected)}`);
            break;
          case "$gte":
            assert.ok(typeof actual === "number" && actual >= expected, `${where}: ${actual} < ${expected}`);
            break;
          case "$lt":
            assert.ok(typeof actual === "number" && actual < expected, `${where}: ${actual} >= ${expected}`);
            break;
          case "$nonempty":
            assert.ok(typeof actual === "string" && actual.length > 0, `${where}: empty or not a string: ${actual}`);
            break;
          case "$request_id":
            assert.equal(actual, context.requestId, `${where}: not the request id sent`);
            break;
          case "$saved":
            assert.deepEqual(actual, saved(expected, context, false), `${where}: not the saved ${expected}`);
            break;
          default:
            throw new Error(`unknown operator ${op} at ${where}`);
        }
      }
      return;
    }
    assert.ok(actual !== null && typeof actual === "object", `${where}: expected an object, got ${JSON.stringify(actual)}`);
    for (const [key, expected] of Object.entries(pattern)) {
      match(expected, actual[key], context, `${where}.${key}`);
    }
    return;
  }
  if (Array.isArray(pattern)) {
    assert.ok(Array.isArray(actual), `${where}: expected an array, got ${JSON.stringify(actual)}`);
    assert.equal(actual.length, pattern.length, `${where}: length`);
    pattern.forEach((expected, i) => match(expected, actual[i], context, `${where}[${i}]`));
    return;
  }
  if (typeof pattern === "number" && typeof actual === "number") {
    assert.ok(Math.abs(actual - pattern) <= context.tolerance, `${where}: ${actual} is not ${pattern}`);
    return;
  }
  assert.equal(actual ?? null, pattern, `${where}`);
}

function matches(pattern, actual, context) {
  try {
    match(pattern, actual, context);
    return true;
  } catch {
    return false;
  }
}

// ---- the server's access log ----------------------------------------------------------------------

async function accessLines(logPath, requestId) {
  const lines = [];
  for (const raw of (await readFile(logPath, "utf8")).split("\n")) {
    if (!raw.startsWith("{") || !raw.includes(requestId)) continue;
    try {
      const line = JSON.parse(raw);
      if (line.logger === "predictors.access" && line.request_id === requestId) lines.push(line);
    } catch {
      // a line cut in the middle of its write
    }
  }
  return lines;
}

/** The access lines of `requestId` once they match (a line is written once its answer has been sent). */
async function checkAccessLog(step, server, context) {
  const check = (lines) => {
    match(step.access_log, lines, context, "access_log");
    if (step.access_log_gaps_ms) {
      const times = lines.map((line) => Date.parse(line.time));
      match(step.access_log_gaps_ms, times.slice(1).map((t, i) => t - times[i]), context, "access_log_gaps_ms");
    }
  };
  const deadline = performance.now() + 10_000;
  for (;;) {
    const lines = await accessLines(server.log, context.requestId);
    if (matches(step.access_log, lines, context) || performance.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await new Promise((resolve) => setTimeout(resolve, 300)); // a line more, were there one, would be written by now
  check(await accessLines(server.log, context.requestId));
}

// ---- running a vector ---------------------------------------------------------------------------

function makeClient(spec) {
  const server = servers[spec.server];
  assert.ok(server, `no server ${spec.server}`);
  const policy = new sdk.RetryPolicy({ retries: spec.retries, backoffBaseMs: spec.backoff_base_ms ?? 100,
    backoffMaxMs: spec.backoff_max_ms ?? 5000 });
  return [new sdk.Client(server.url + (spec.path ?? ""), { timeoutMs: spec.timeout_ms, retryPolicy: policy,
    protocol: spec.protocol ?? "binary" }), server];
}

async function runStep(client, server, step, index, context) {
  context.requestId = step.send_request_id === false ? undefined : `${context.prefix}.${index}`;
  const abort = new AbortController();
  const options = { requestId: context.requestId, timeoutMs: step.timeout_ms, traceparent: step.traceparent,
    signal: abort.signal };
  const method = METHODS[step.call];
  assert.ok(method, `unknown call ${step.call}`);
  const started = performance.now();
  const timer = step.abort_after_ms === undefined ? null : setTimeout(() => abort.abort(), step.abort_after_ms);
  let outcome;
  try {
    outcome = { result: await method(client, step.args, options, context) };
  } catch (error) {
    outcome = { error };
  } finally {
    if (timer) clearTimeout(timer);
  }
  const elapsed = performance.now() - started;
  const expect = step.expect;
  if (expect.aborted) {
    assert.ok(outcome.error, "the call was not aborted");
    assert.equal(outcome.error.name, "AbortError", `not an AbortError: ${outcome.error}`);
  } else if (expect.error) {
    assert.ok(outcome.error, `no error: the call returned ${JSON.stringify(normal(outcome.result))}`);
    const error = normalError(outcome.error);
    context.requestId ??= error.request_id;
    assert.ok(error.message && error.request_id, `an error without message or request id: ${JSON.stringify(error)}`);
    match(expect.error, error, context, "error");
  } else {
    if (outcome.error) throw outcome.error;
    const result = normal(outcome.result);
    match(expect.result, result, context, "result");
    if (step.save) context.saved[step.save] = { raw: outcome.result, normal: result };
  }
  if (step.elapsed_ms) match(step.elapsed_ms, elapsed, context, "elapsed_ms");
  if (step.access_log) await checkAccessLog(step, server, context);
}

for (const vector of document.vectors) {
  test(vector.name, async () => {
    const [client, server] = makeClient({ ...document.defaults.client, ...vector.client });
    const context = { prefix: `${run}.${vector.name}`, saved: {}, tolerance: document.defaults.tolerance };
    for (const [index, step] of vector.steps.entries()) {
      await runStep(client, server, step, index, context);
    }
  });
}
