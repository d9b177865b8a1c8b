"""The SDKs' shared test vectors (clients/conformance/): resolving their references, and the Python SDK's
reading of them (clients/conformance/README.md defines what a vector means).

`resolve` turns every ``{"$v1": {...}}`` of the vectors into what the server's v1 route answers for the same
input (binary content as its sha256), so that each SDK's runner compares its typed results with literal
values. `run_vector` runs one vector with `predictors_client`; the TypeScript and Java runners
(clients/typescript/test/conformance.test.mjs, clients/java/src/test/.../ConformanceTest.java) do the same
in their languages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from predictors_client import (
    Client,
    EnhancedFace,
    Entailment,
    InferResult,
    Job,
    Labels,
    PredictorError,
    RetryPolicy,
)
from predictors_client.errors import ERRORS_BY_CODE
from predictors_client.jobs import JobCancelled

REPO = Path(__file__).resolve().parents[2]
CONFORMANCE = REPO / "clients" / "conformance"
VECTORS = CONFORMANCE / "vectors.json"
IMAGES = CONFORMANCE / "images"

#: the SDK's error classes by the code they stand for, as the vectors name them ("base": the base class)
ERROR_CLASSES: dict[str, type[PredictorError]] = {**ERRORS_BY_CODE, JobCancelled.code: JobCancelled}
for _cls in PredictorError.__subclasses__():
    ERROR_CLASSES.setdefault(_cls.code, _cls)


def load_vectors() -> dict[str, Any]:
    return json.loads(VECTORS.read_text(encoding="utf-8"))


# ---- resolving references -------------------------------------------------------------------------


def resolve(document: dict[str, Any], server_url: str) -> dict[str, Any]:
    """The vectors with every ``$v1`` reference replaced by the server's v1 answer (each asked once)."""
    answers: dict[str, Any] = {}

    def v1(reference: dict[str, Any]) -> Any:
        key = json.dumps(reference, sort_keys=True)
        if key not in answers:
            instance = {name: ({"b64": base64.b64encode((IMAGES / value).read_bytes()).decode()} if name == "image"
                               else value) for name, value in reference["instance"].items()}
            body = {"instances": [instance], "parameters": reference.get("parameters", {})}
            response = httpx.post(f"{server_url}/v1/models/{reference['model']}:predict", json=body, timeout=600)
            response.raise_for_status()
            answers[key] = digest_binary(response.json()["predictions"][0])
        return answers[key]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$v1" in node:
                answer = v1(node["$v1"])
                if "$path" in node:
                    return answer[node["$path"]]
                return {**answer, **{name: walk(value) for name, value in node.items() if name != "$v1"}}
            return {name: walk(value) for name, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return node

    return walk(document)  # type: ignore[no-any-return]


def digest_binary(prediction: dict[str, Any]) -> dict[str, Any]:
    """Binary content of a v1 answer (``{"b64": ...}``) as ``<name>_sha256``, the way the runners read results."""
    return {(f"{name}_sha256" if isinstance(value, dict) and "b64" in value else name):
            (hashlib.sha256(base64.b64decode(value["b64"])).hexdigest() if isinstance(value, dict) and "b64" in value
             else value)
            for name, value in prediction.items()}


# ---- the Python SDK's runner ---------------------------------------------------------------------


@dataclass
class Server:
    url: str
    log: Path


@dataclass
class Context:
    prefix: str
    tolerance: float
    saved: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    request_id: str | None = None


def image(spec: dict[str, Any], in_inputs: bool, position: int) -> Any:
    """A vector's image as this SDK takes it: `in_inputs` when it is an element of infer's inputs (where a str
    is text)."""
    if "zeros" in spec:
        return bytes(spec["zeros"])
    path = IMAGES / spec["file"]
    kind = spec.get("as", "bytes")
    if kind == "path":  # a str, and a pathlib.Path every other time (always a Path among inputs)
        return path if in_inputs or position % 2 else str(path)
    if kind == "bytes":
        return path.read_bytes()
    if kind == "stream":  # an open file, and an io.BytesIO every other time
        return io.BytesIO(path.read_bytes()) if position % 2 else open(path, "rb")  # noqa: SIM115 - read by the call
    if kind == "blob":
        return memoryview(path.read_bytes())
    raise ValueError(f"unknown image kind {kind}")


def images(spec: Any, in_inputs: bool = False) -> Any:
    if isinstance(spec, list):
        return [image(one, in_inputs, i) for i, one in enumerate(spec)]
    if "times" in spec:
        return [image(spec, in_inputs, i) for i in range(spec["times"])]
    return image(spec, in_inputs, 0)


def value(spec: Any, context: Context) -> Any:
    if isinstance(spec, dict):
        if "$saved" in spec:
            return saved(spec["$saved"], context, raw=True)
        if "$unique" in spec:
            return f"{context.prefix}.{spec['$unique']}"
        if "text" in spec:
            return spec["text"] * spec.get("times", 1)
        if "file" in spec or "zeros" in spec:
            return images(spec, in_inputs=True)
    if isinstance(spec, list):
        return [value(one, context) for one in spec]
    return spec


def saved(path: str, context: Context, raw: bool) -> Any:
    name, *fields = path.split(".")
    assert name in context.saved, f"nothing saved as {name}"
    found = context.saved[name][0] if raw and not fields else context.saved[name][1]
    for name in fields:
        found = found[name]
    return found


def inputs(spec: dict[str, Any], context: Context) -> dict[str, Any]:
    return {name: value(one, context) for name, one in spec.items()}


def call(client: Client, method: str, args: dict[str, Any], options: dict[str, Any], context: Context) -> Any:
    """The vector's call with this SDK (`options`: request_id and timeout_ms)."""
    model = {"model": args["model"]} if "model" in args else {}
    if method == "recognize":
        return client.recognize(images(args["image"]), args.get("top_k", 5), **model, **options)
    if method == "classify":
        return client.classify(images(args["image"]), top_k=args.get("top_k", 5), **model, **options)
    if method == "enhance_face":
        face = {name: args[name] for name in ("output_format", "jpeg_quality", "require_face", "upscale")
                if name in args}
        return client.enhance_face(images(args["image"]), **face, **model, **options)
    if method == "entails":
        return client.entails(images(args["image"]), value(args["hypothesis"], context), args.get("premise"), **model,
                              **options)
    if method == "infer":
        return client.infer(args["model"], inputs(args["inputs"], context), args.get("parameters"), **options)
    if method == "metadata":
        return client.metadata(args["model"], timeout_ms=options.get("timeout_ms"))
    if method == "submit":
        key = value(args["idempotency_key"], context) if "idempotency_key" in args else None
        return client.submit(args["model"], inputs(args["inputs"], context), args.get("parameters"),
                             idempotency_key=key, **options)
    if method in ("get_job", "cancel"):
        job_call = client.get_job if method == "get_job" else client.cancel
        return job_call(value(args["job"], context), timeout_ms=options.get("timeout_ms"))
    if method in ("wait", "result"):
        timeout = args["timeout_ms"] / 1000 if "timeout_ms" in args else None
        return (client.wait if method == "wait" else client.result)(value(args["job"], context), timeout)
    raise ValueError(f"unknown call {method}")


def normal(result: Any) -> Any:
    """A result read the language-neutral way (clients/conformance/README.md, "Results")."""
    if isinstance(result, list):
        return [normal(one) for one in result]
    if isinstance(result, Labels):
        return {"labels": result.labels, "scores": result.scores}
    if isinstance(result, EnhancedFace):
        return {"format": result.format, "width": result.width, "height": result.height, "faces": result.faces,
                "quality_score": result.quality_score, "needs_review": result.needs_review,
                "image_sha256": hashlib.sha256(result.image_bytes).hexdigest()}
    if isinstance(result, Entailment):
        return {"label": result.label, "scores": result.scores, "classes": list(result.scores)}
    if isinstance(result, InferResult):
        return {"model_name": result.model_name, "output_names": list(result.outputs),
                "outputs": {name: {"datatype": t.datatype, "shape": t.shape, "parameters": t.parameters,
                                   "data": [v.decode() if isinstance(v, bytes) else v for v in t.data]}
                            for name, t in result.outputs.items()}}
    if isinstance(result, Job):
        return {"id": result.id, "model": result.model, "status": result.status, "attempts": result.attempts,
                "has_result": result.result is not None, "error": result.error}
    return result


def normal_error(error: PredictorError) -> dict[str, Any]:
    known = [code for code, cls in ERROR_CLASSES.items() if type(error) is cls]
    kind = known[0] if known else "base" if type(error) is PredictorError else type(error).__name__
    return {"class": kind, "code": error.code, "status": error.status, "request_id": error.request_id,
            "message": error.message, "retry_after": error.retry_after}


def match(pattern: Any, actual: Any, context: Context, where: str = "$") -> None:
    if isinstance(pattern, dict):
        operators = [key for key in pattern if key.startswith("$")]
        if operators:
            for op in operators:
                expected = pattern[op]
                if op == "$len":
                    assert hasattr(actual, "__len__"), f"{where}: no length in {actual!r}"
                    match(expected, len(actual), context, f"{where}.length")
                elif op == "$each":
                    for i, one in enumerate(actual):
                        match(expected, one, context, f"{where}[{i}]")
                elif op == "$first":
                    match(expected, actual[0] if actual else None, context, f"{where}[0]")
                elif op == "$last":
                    match(expected, actual[-1] if actual else None, context, f"{where}[-1]")
                elif op == "$in":
                    assert any(matches(candidate, actual, context) for candidate in expected), \
                        f"{where}: {actual!r} not in {expected!r}"
                elif op == "$gte":
                    assert isinstance(actual, (int, float)) and actual >= expected, f"{where}: {actual} < {expected}"
                elif op == "$lt":
                    assert isinstance(actual, (int, float)) and actual < expected, f"{where}: {actual} >= {expected}"
                elif op == "$nonempty":
                    assert isinstance(actual, str) and actual, f"{where}: empty or not a string: {actual!r}"
                elif op == "$request_id":
                    assert actual == context.request_id, f"{where}: {actual!r} is not the request id sent"
                elif op == "$saved":
                    assert actual == saved(expected, context, raw=False), f"{where}: not the saved {expected}"
                else:
                    raise AssertionError(f"unknown operator {op} at {where}")
            return
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, expected in pattern.items():
            match(expected, actual.get(key), context, f"{where}.{key}")
        return
    if isinstance(pattern, list):
        assert isinstance(actual, list), f"{where}: expected an array, got {actual!r}"
        assert len(actual) == len(pattern), f"{where}: length {len(actual)} is not {len(pattern)}"
        for i, (expected, one) in enumerate(zip(pattern, actual, strict=True)):
            match(expected, one, context, f"{where}[{i}]")
        return
    if isinstance(pattern, (int, float)) and not isinstance(pattern, bool):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), f"{where}: {actual!r} is no number"
        assert abs(actual - pattern) <= context.tolerance, f"{where}: {actual} is not {pattern}"
        return
    assert actual == pattern, f"{where}: {actual!r} is not {pattern!r}"


def matches(pattern: Any, actual: Any, context: Context) -> bool:
    try:
        match(pattern, actual, context)
    except AssertionError:
        return False
    return True


def access_lines(log: Path, request_id: str) -> list[dict[str, Any]]:
    lines = []
    for raw in log.read_text(errors="replace").splitlines():
        if raw.startswith("{") and request_id in raw:
            with contextlib.suppress(json.JSONDecodeError):  # a line cut in the middle of its write
                line = json.loads(raw)
                if line.get("logger") == "predictors.access" and line.get("request_id") == request_id:
                    lines.append(line)
    return lines


def check_access_log(step: dict[str, Any], log: Path, context: Context) -> None:
    """The access lines of the step's request id, once they match (a line is written once its answer was sent)."""
    assert context.request_id is not None
    deadline = time.monotonic() + 10
    while not matches(step["access_log"], access_lines(log, context.request_id), context) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # a line more, were there one, would be written by now
    lines = access_lines(log, context.request_id)
    match(step["access_log"], lines, context, "access_log")
    if "access_log_gaps_ms" in step:
        times = [datetime.datetime.fromisoformat(line["time"]).timestamp() * 1000 for line in lines]
        match(step["access_log_gaps_ms"], [b - a for a, b in zip(times, times[1:], strict=False)], context,
              "access_log_gaps_ms")


@contextlib.contextmanager
def current_trace(traceparent: str | None) -> Iterator[None]:
    """The Python SDK sends the current OpenTelemetry span's context: make `traceparent` the current one."""
    if traceparent is None:
        yield
        return
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    _, trace_id, span_id, flags = traceparent.split("-")
    span = NonRecordingSpan(SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                                        trace_flags=TraceFlags(int(flags, 16))))
    with trace.use_span(span):
        yield


def aborted_call(client_options: dict[str, Any], url: str, step: dict[str, Any], options: dict[str, Any]) -> bool:
    """The Python idiom of aborting a call: cancel the asyncio task of an `AsyncClient` call."""
    from predictors_client import AsyncClient

    async def cancelled() -> bool:
        async with AsyncClient(url, **client_options) as client:
            task = asyncio.ensure_future(client.recognize(images(step["args"]["image"]), **options))
            await asyncio.sleep(step["abort_after_ms"] / 1000)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                return True
            return False

    return asyncio.run(cancelled())


def run_step(client: Client, client_options: dict[str, Any], url: str, server: Server, step: dict[str, Any],
             index: int, context: Context) -> None:
    context.request_id = None if step.get("send_request_id") is False else f"{context.prefix}.{index}"
    options: dict[str, Any] = {"request_id": context.request_id} if context.request_id else {}
    if "timeout_ms" in step:
        options["timeout_ms"] = step["timeout_ms"]
    expect = step["expect"]
    started = time.monotonic()
    outcome: Any = None
    error: BaseException | None = None
    if expect.get("aborted"):
        assert step["call"] == "recognize", "the Python runner aborts recognize calls"
        assert aborted_call(client_options, url, step, options), "the call was not aborted"
    else:
        with current_trace(step.get("traceparent")):
            try:
                outcome = call(client, step["call"], step["args"], options, context)
            except PredictorError as failure:
                error = failure
    elapsed = (time.monotonic() - started) * 1000
    if "error" in expect:
        assert isinstance(error, PredictorError), f"no error: the call returned {normal(outcome)!r}"
        described = normal_error(error)
        context.request_id = context.request_id or described["request_id"]
        assert described["message"] and described["request_id"], f"an error without message or request id: {described}"
        match(expect["error"], described, context, "error")
    elif "result" in expect:
        if error is not None:
            raise error
        result = normal(outcome)
        match(expect["result"], result, context, "result")
        if "save" in step:
            context.saved[step["save"]] = (outcome, result)
    if "elapsed_ms" in step:
        match(step["elapsed_ms"], elapsed, context, "elapsed_ms")
    if "access_log" in step:
        check_access_log(step, server.log, context)


def run_vector(document: dict[str, Any], vector: dict[str, Any], servers: dict[str, Server], run: str) -> None:
    spec = {**document["defaults"]["client"], **vector.get("client", {})}
    server = servers[spec["server"]]
    url = server.url + spec.get("path", "")
    policy = RetryPolicy(retries=spec["retries"], backoff_base=spec.get("backoff_base_ms", 100) / 1000,
                         backoff_max=spec.get("backoff_max_ms", 5000) / 1000)
    client_options = {"timeout": spec["timeout_ms"] / 1000, "retry_policy": policy,
                      "protocol": spec.get("protocol", "binary")}
    context = Context(f"{run}.{vector['name']}", document["defaults"]["tolerance"])
    with Client(url, **client_options) as client:
        for index, step in enumerate(vector["steps"]):
            run_step(client, client_options, url, server, step, index, context)
