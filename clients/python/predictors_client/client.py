"""`Client` and `AsyncClient`: the same methods, one blocking, one for asyncio.

A call is built once (the request body, the request id, the decoder of the answer) and then sent with
one retry policy: another attempt on 503 `SERVICE_BUSY` / `MODEL_NOT_READY` and on connection failures,
after `Retry-After` when the server gives one, else after a jittered exponential back-off, all within
one overall deadline; never on another status (4xx, 500, 504). Every attempt carries the same
`X-Request-ID`, so the server's logs show one request retried, and the remaining deadline as
`X-Request-Timeout-Ms`, so the server drops work nobody waits for any more.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar, overload

import httpx

from predictors_client.errors import (
    RETRYABLE_CODES,
    ConnectionFailed,
    PredictorError,
    Timeout,
    UnexpectedResponse,
    error_for,
)
from predictors_client.images import ImageBatch, ImageLike, encode_images, image_bytes
from predictors_client.jobs import (
    LONG_POLL_GRACE_SECONDS,
    Job,
    LongPolls,
    Polling,
    job_from,
    job_id,
    long_poll_path,
    outcome,
)
from predictors_client.results import (
    EnhancedFace,
    Entailment,
    Labels,
    entailments_from,
    faces_from,
    labels_from,
)
from predictors_client.wire import HEADER_LENGTH, Element, InferResult, Protocol, decode_response, encode_request

T = TypeVar("T")

REQUEST_ID_HEADER = "X-Request-ID"
TIMEOUT_HEADER = "X-Request-Timeout-Ms"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: how much longer than the deadline the client waits, so that the server's own 504 (with its request id)
#: arrives instead of a client-side cut-off
_ANSWER_GRACE_SECONDS = 0.25


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` further attempts at most; back-off `base * 2**attempt` seconds (full jitter), capped."""

    retries: int = 3
    backoff_base: float = 0.1
    backoff_max: float = 5.0

    def delay(self, attempt: int, error: PredictorError, remaining: float) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up and raise `error`."""
        retryable = isinstance(error, ConnectionFailed) or (error.status == 503 and error.code in RETRYABLE_CODES)
        if not retryable or attempt >= self.retries:
            return None
        delay = random.uniform(0.0, min(self.backoff_max, self.backoff_base * 2**attempt))
        if error.retry_after is not None:
            # at least what the server asked for; spread a little so waiting clients do not return together
            delay = max(delay, error.retry_after * random.uniform(1.0, 1.1))
        return delay if delay < remaining else None


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One logical call, sent unchanged on every attempt."""

    method: str
    path: str
    content: bytes | None
    headers: dict[str, str]
    decode: Callable[[httpx.Response, str], T]
    request_id: str
    budget: float


@functools.lru_cache(maxsize=1)
def _opentelemetry() -> Any:
    try:
        from opentelemetry import propagate, trace
    except ImportError:
        return None
    return propagate, trace


def trace_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`/`baggage`) of the current span, when OpenTelemetry is installed."""
    modules = _opentelemetry()
    if modules is None:
        return {}
    propagate, trace = modules
    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def error_from_response(response: httpx.Response, request_id: str) -> PredictorError:
    retry_after = _retry_after(response.headers.get("retry-after"))
    answered_id = response.headers.get(REQUEST_ID_HEADER) or request_id
    try:
        body = response.json()
        code, message = body["code"], body["error"]
        if not isinstance(code, str):
            raise TypeError(code)
    except (ValueError, KeyError, TypeError):
        return UnexpectedResponse(f"HTTP {response.status_code}: {response.text[:300]!r}",
                                  status=response.status_code, request_id=answered_id, retry_after=retry_after)
    return error_for(code, str(message), response.status_code, body.get("request_id") or answered_id, retry_after)


def _decode_inference(response: httpx.Response, request_id: str) -> InferResult:
    return decode_response(response.content, response.headers.get(HEADER_LENGTH), request_id)


def _decode_json(response: httpx.Response, request_id: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise UnexpectedResponse(f"not JSON: {response.text[:300]!r}", status=response.status_code,
                                 request_id=request_id) from None


def _one_or_many(batched: bool, convert: Callable[[InferResult], list[T]]) -> Callable[[InferResult], Any]:
    def pick(result: InferResult) -> Any:
        values = convert(result)
        return values if batched else values[0]

    return pick


def _column(value: str | Sequence[str], count: int, name: str) -> list[str]:
    if isinstance(value, str):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise ValueError(f"{len(values)} {name} values for {count} images")
    return values


class _Calls:
    """What both clients share: settings, and building each call (no I/O here)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        protocol: Protocol = "binary",
        headers: Mapping[str, str] | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        if protocol not in ("binary", "json"):
            raise ValueError(f"protocol must be 'binary' or 'json', got {protocol!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.protocol: Protocol = protocol
        self.headers = dict(headers or {})
        self.retry_policy = retry_policy or RetryPolicy(retries=retries)

    def _call(self, method: str, path: str, content: bytes | None, headers: Mapping[str, str],
              decode: Callable[[httpx.Response, str], T], timeout_ms: float | None,
              request_id: str | None) -> _Call[T]:
        budget = timeout_ms / 1000.0 if timeout_ms is not None else self.timeout
        if budget <= 0:
            raise ValueError("timeout_ms must be positive")
        return _Call(method, path, content, {**self.headers, **headers, **trace_headers()}, decode,
                     request_id or uuid.uuid4().hex, budget)

    def _infer_call(self, model: str, inputs: Mapping[str, Sequence[Element]], parameters: Mapping[str, Any],
                    convert: Callable[[InferResult], T], timeout_ms: float | None,
                    request_id: str | None) -> _Call[T]:
        encoded = encode_request(inputs, parameters, self.protocol)
        return self._call("POST", f"/v2/models/{model}/infer", encoded.content, encoded.headers,
                          lambda response, rid: convert(_decode_inference(response, rid)), timeout_ms, request_id)

    def _labels_call(self, model: str, image: ImageLike | ImageBatch, top_k: int,
                     timeout_ms: float | None, request_id: str | None) -> _Call[Any]:
        images, batched = encode_images(image)
        return self._infer_call(model, {"image": images}, {"top_k": top_k}, _one_or_many(batched, labels_from),
                                timeout_ms, request_id)

    def _face_call(self, model: str, image: ImageLike | ImageBatch, parameters: Mapping[str, Any],
                   timeout_ms: float | None, request_id: str | None) -> _Call[Any]:
        images, batched = encode_images(image)
        given = {name: value for name, value in parameters.items() if value is not None}
        return self._infer_call(model, {"image": images}, given, _one_or_many(batched, faces_from),
                                timeout_ms, request_id)

    def _entailment_call(self, model: str, image: ImageLike | ImageBatch,
                         hypothesis: str | Sequence[str], premise: str | Sequence[str] | None,
                         timeout_ms: float | None, request_id: str | None) -> _Call[Any]:
        images, batched = encode_images(image)
        inputs: dict[str, Sequence[Element]] = {"image": images,
                                                "hypothesis": _column(hypothesis, len(images), "hypothesis")}
        if premise is not None:
            inputs["premise"] = _column(premise, len(images), "premise")
        return self._infer_call(model, inputs, {}, _one_or_many(batched, entailments_from), timeout_ms,
                                request_id)

    def _generic_call(self, model: str, inputs: Mapping[str, Any], parameters: Mapping[str, Any] | None,
                      timeout_ms: float | None, request_id: str | None) -> _Call[InferResult]:
        return self._infer_call(model, _columns(inputs), parameters or {}, lambda result: result, timeout_ms,
                                request_id)

    def _submit_call(self, model: str, inputs: Mapping[str, Any], parameters: Mapping[str, Any] | None,
                     idempotency_key: str | None, timeout_ms: float | None, request_id: str | None) -> _Call[Job]:
        encoded = encode_request(_columns(inputs), parameters or {}, self.protocol)
        # Always a key: a retried submit (its answer lost, or 503 JOBS_UNAVAILABLE after Redis took it) is
        # then the same job, never a second one.
        headers = {**encoded.headers, IDEMPOTENCY_HEADER: idempotency_key or uuid.uuid4().hex}
        return self._call("POST", f"/v2/models/{model}/jobs", encoded.content, headers, job_from, timeout_ms,
                          request_id)

    def _job_call(self, method: str, job: Job | str, timeout_ms: float | None) -> _Call[Job]:
        return self._call(method, f"/v2/jobs/{job_id(job)}", None, {}, job_from, timeout_ms, None)

    def _long_poll_call(self, polls: LongPolls, current: Job | None) -> _Call[Job]:
        hold = polls.hold(current)
        # the whole time left (not just the hold) for the call's retries (503 JOBS_UNAVAILABLE, a lost
        # connection), plus a grace so that its answer after the hold is never cut off
        budget = max(hold, polls.deadline - time.monotonic()) + LONG_POLL_GRACE_SECONDS
        return self._call("GET", long_poll_path(polls.job_id, hold), None, {}, job_from, budget * 1000, None)

    def _metadata_call(self, model: str, timeout_ms: float | None, request_id: str | None) -> _Call[Any]:
        return self._call("GET", f"/v2/models/{model}", None, {}, _decode_json, timeout_ms, request_id)

    def _attempt_headers(self, call: _Call[Any], remaining: float) -> dict[str, str]:
        return {**call.headers, REQUEST_ID_HEADER: call.request_id,
                TIMEOUT_HEADER: str(max(1, int(remaining * 1000)))}

    def _outcome(self, call: _Call[T], response: httpx.Response) -> T | PredictorError:
        if response.status_code in (200, 202):
            return call.decode(response, response.headers.get(REQUEST_ID_HEADER) or call.request_id)
        return error_from_response(response, call.request_id)

    def _no_answer(self, call: _Call[Any], error: httpx.HTTPError) -> PredictorError:
        if isinstance(error, httpx.TimeoutException):
            return Timeout(f"no answer within the call's deadline of {call.budget:.3g} s ({error!r})",
                           request_id=call.request_id)
        return ConnectionFailed(f"{call.method} {self.url}{call.path}: {error!r}", request_id=call.request_id)

    def _next_delay(self, call: _Call[Any], attempt: int, error: PredictorError, deadline: float) -> float:
        """The wait before the next attempt; raises `error` when there is none."""
        delay = self.retry_policy.delay(attempt, error, deadline - time.monotonic())
        if delay is None:
            raise error
        return delay


def _columns(inputs: Mapping[str, Any]) -> dict[str, Sequence[Element]]:
    columns: dict[str, Sequence[Element]] = {}
    for name, value in inputs.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        # str elements are text; anything else is binary content (bytes, a path-like, a file, a PIL image)
        columns[name] = [v if isinstance(v, str) else image_bytes(v) for v in values]
    return columns


class Client(_Calls):
    """Blocking client. `Client("http://localhost:8080").recognize("cat.jpg")`.

    `timeout` (seconds) is each call's overall deadline, retries included, unless the call passes
    `timeout_ms`; `retries` bounds the further attempts; `protocol` is `"binary"` (v2 binary tensor
    extension, default) or `"json"` (v2 JSON, images base64-encoded). Other keyword arguments go to
    `httpx.Client` (proxies, TLS, event hooks, ...).
    """

    def __init__(self, url: str, *, timeout: float = 60.0, retries: int = 3, protocol: Protocol = "binary",
                 headers: Mapping[str, str] | None = None, retry_policy: RetryPolicy | None = None,
                 **httpx_options: Any) -> None:
        super().__init__(url, timeout=timeout, retries=retries, protocol=protocol, headers=headers,
                         retry_policy=retry_policy)
        self._http = httpx.Client(base_url=self.url, **httpx_options)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: _Call[T]) -> T:
        deadline = time.monotonic() + call.budget
        attempt = 0
        last: PredictorError | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # a retry's wait that overran the deadline (by a timer's slack): the last attempt's error stands
                raise last or Timeout(f"the call's deadline of {call.budget:.3g} s passed", request_id=call.request_id)
            try:
                response = self._http.request(call.method, call.path, content=call.content,
                                              headers=self._attempt_headers(call, remaining),
                                              timeout=remaining + _ANSWER_GRACE_SECONDS)
                outcome = self._outcome(call, response)
            except httpx.HTTPError as error:
                outcome = self._no_answer(call, error)
            if not isinstance(outcome, PredictorError):
                return outcome
            last = outcome
            time.sleep(self._next_delay(call, attempt, outcome, deadline))
            attempt += 1

    @overload
    def recognize(self, image: ImageBatch, top_k: int = ..., *, model: str = ..., timeout_ms: float | None = ...,
                  request_id: str | None = ...) -> list[Labels]: ...
    @overload
    def recognize(self, image: ImageLike, top_k: int = ..., *, model: str = ..., timeout_ms: float | None = ...,
                  request_id: str | None = ...) -> Labels: ...

    def recognize(self, image: ImageLike | ImageBatch, top_k: int = 5, *,
                  model: str = "general-recognition", timeout_ms: float | None = None,
                  request_id: str | None = None) -> Any:
        """Top-k labels of general recognition: `Labels`, or a list of them for a list of images."""
        return self._run(self._labels_call(model, image, top_k, timeout_ms, request_id))

    @overload
    def classify(self, image: ImageBatch, model: str = ..., top_k: int = ..., *, timeout_ms: float | None = ...,
                 request_id: str | None = ...) -> list[Labels]: ...
    @overload
    def classify(self, image: ImageLike, model: str = ..., top_k: int = ..., *, timeout_ms: float | None = ...,
                 request_id: str | None = ...) -> Labels: ...

    def classify(self, image: ImageLike | ImageBatch, model: str = "image-classification",
                 top_k: int = 5, *, timeout_ms: float | None = None, request_id: str | None = None) -> Any:
        """Top-k labels of a classifier: `Labels`, or a list of them for a list of images."""
        return self._run(self._labels_call(model, image, top_k, timeout_ms, request_id))

    @overload
    def enhance_face(self, image: ImageBatch, *, output_format: str | None = ..., jpeg_quality: int | None = ...,
                     require_face: bool | None = ..., upscale: bool | None = ..., model: str = ...,
                     timeout_ms: float | None = ..., request_id: str | None = ...) -> list[EnhancedFace]: ...
    @overload
    def enhance_face(self, image: ImageLike, *, output_format: str | None = ..., jpeg_quality: int | None = ...,
                     require_face: bool | None = ..., upscale: bool | None = ..., model: str = ...,
                     timeout_ms: float | None = ..., request_id: str | None = ...) -> EnhancedFace: ...

    def enhance_face(self, image: ImageLike | ImageBatch, *, output_format: str | None = None,
                     jpeg_quality: int | None = None, require_face: bool | None = None,
                     upscale: bool | None = None, model: str = "face-enhancement",
                     timeout_ms: float | None = None, request_id: str | None = None) -> Any:
        """GPEN portrait enhancement: `EnhancedFace`, or a list of them. Parameters left None take the
        server's defaults (jpeg, quality 95, require_face, upscale)."""
        parameters = {"output_format": output_format, "jpeg_quality": jpeg_quality, "require_face": require_face,
                      "upscale": upscale}
        return self._run(self._face_call(model, image, parameters, timeout_ms, request_id))

    @overload
    def entails(self, image: ImageBatch, hypothesis: str | Sequence[str],
                premise: str | Sequence[str] | None = ..., *, model: str = ..., timeout_ms: float | None = ...,
                request_id: str | None = ...) -> list[Entailment]: ...
    @overload
    def entails(self, image: ImageLike, hypothesis: str, premise: str | None = ..., *, model: str = ...,
                timeout_ms: float | None = ..., request_id: str | None = ...) -> Entailment: ...

    def entails(self, image: ImageLike | ImageBatch, hypothesis: str | Sequence[str],
                premise: str | Sequence[str] | None = None, *, model: str = "visual-entailment",
                timeout_ms: float | None = None, request_id: str | None = None) -> Any:
        """Visual entailment: `Entailment`, or a list of them (one hypothesis for all, or one per image)."""
        return self._run(self._entailment_call(model, image, hypothesis, premise, timeout_ms, request_id))

    def infer(self, model: str, inputs: Mapping[str, Any], parameters: Mapping[str, Any] | None = None, *,
              timeout_ms: float | None = None, request_id: str | None = None) -> InferResult:
        """Any model: `inputs` maps each input name to its elements (str = text, else binary content)."""
        return self._run(self._generic_call(model, inputs, parameters, timeout_ms, request_id))

    def metadata(self, model: str, *, timeout_ms: float | None = None) -> dict[str, Any]:
        """The model's v2 metadata: its inputs and outputs with names, datatypes and shapes."""
        return self._run(self._metadata_call(model, timeout_ms, None))  # type: ignore[no-any-return]

    # ---- asynchronous jobs (the server needs --jobs-redis-url) ---------------------------------------

    def submit(self, model: str, inputs: Mapping[str, Any], parameters: Mapping[str, Any] | None = None, *,
               idempotency_key: str | None = None, timeout_ms: float | None = None,
               request_id: str | None = None) -> Job:
        """Queue a job with `infer`'s inputs and parameters; returns at once with the queued `Job`."""
        return self._run(self._submit_call(model, inputs, parameters, idempotency_key, timeout_ms, request_id))

    def get_job(self, job: Job | str, *, timeout_ms: float | None = None) -> Job:
        """The job as it is now."""
        return self._run(self._job_call("GET", job, timeout_ms))

    def cancel(self, job: Job | str, *, timeout_ms: float | None = None) -> Job:
        """Cancel a queued or running job (a running one finishes; its result is discarded)."""
        return self._run(self._job_call("DELETE", job, timeout_ms))

    def wait(self, job: Job | str, timeout: float | None = None, *, polling: Polling | None = None) -> Job:
        """The job once it succeeded, failed or was cancelled (at most `timeout` seconds, default the
        client's `timeout`; then `Timeout`).

        Each request is a long poll, ``GET /v2/jobs/{id}?wait=W`` with W the time left (at most 20 s): the
        server answers as soon as the job has ended, so a job that ends within W costs one request. An answer
        that comes back early with the job unfinished (a server without long polls, or one shutting down) is
        followed by the pauses of `polling` (0.05 s, then 1.5 times longer, at most 2 s) before the next."""
        polls = LongPolls(job, self.timeout if timeout is None else timeout, polling)
        current = job if isinstance(job, Job) else None
        while current is None or not current.done:
            current = self._run(self._long_poll_call(polls, current))
            if not current.done:
                time.sleep(polls.pause())
        return current

    def result(self, job: Job | str, timeout: float | None = None) -> InferResult:
        """The job's result, once it has one (`wait`); its error raised as the usual exception."""
        return outcome(self.wait(job, timeout))


class AsyncClient(_Calls):
    """The asyncio twin of `Client`: the same constructor and methods, awaited."""

    def __init__(self, url: str, *, timeout: float = 60.0, retries: int = 3, protocol: Protocol = "binary",
                 headers: Mapping[str, str] | None = None, retry_policy: RetryPolicy | None = None,
                 **httpx_options: Any) -> None:
        super().__init__(url, timeout=timeout, retries=retries, protocol=protocol, headers=headers,
                         retry_policy=retry_policy)
        self._http = httpx.AsyncClient(base_url=self.url, **httpx_options)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, call: _Call[T]) -> T:
        deadline = time.monotonic() + call.budget
        attempt = 0
        last: PredictorError | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # a retry's wait that overran the deadline (by a timer's slack): the last attempt's error stands
                raise last or Timeout(f"the call's deadline of {call.budget:.3g} s passed", request_id=call.request_id)
            try:
                response = await self._http.request(call.method, call.path, content=call.content,
                                                    headers=self._attempt_headers(call, remaining),
                                                    timeout=remaining + _ANSWER_GRACE_SECONDS)
                outcome = self._outcome(call, response)
            except httpx.HTTPError as error:
                outcome = self._no_answer(call, error)
            if not isinstance(outcome, PredictorError):
                return outcome
            last = outcome
            await asyncio.sleep(self._next_delay(call, attempt, outcome, deadline))
            attempt += 1

    @overload
    async def recognize(self, image: ImageBatch, top_k: int = ..., *, model: str = ..., timeout_ms: float | None = ...,
                  request_id: str | None = ...) -> list[Labels]: ...
    @overload
    async def recognize(self, image: ImageLike, top_k: int = ..., *, model: str = ..., timeout_ms: float | None = ...,
                  request_id: str | None = ...) -> Labels: ...

    async def recognize(self, image: ImageLike | ImageBatch, top_k: int = 5, *,
                        model: str = "general-recognition", timeout_ms: float | None = None,
                        request_id: str | None = None) -> Any:
        return await self._run(self._labels_call(model, image, top_k, timeout_ms, request_id))

    @overload
    async def classify(self, image: ImageBatch, model: str = ..., top_k: int = ..., *, timeout_ms: float | None = ...,
                 request_id: str | None = ...) -> list[Labels]: ...
    @overload
    async def classify(self, image: ImageLike, model: str = ..., top_k: int = ..., *, timeout_ms: float | None = ...,
                 request_id: str | None = ...) -> Labels: ...

    async def classify(self, image: ImageLike | ImageBatch, model: str = "image-classification",
                       top_k: int = 5, *, timeout_ms: float | None = None, request_id: str | None = None) -> Any:
        return await self._run(self._labels_call(model, image, top_k, timeout_ms, request_id))

    @overload
    async def enhance_face(self, image: ImageBatch, *, output_format: str | None = ..., jpeg_quality: int | None = ...,
                     require_face: bool | None = ..., upscale: bool | None = ..., model: str = ...,
                     timeout_ms: float | None = ..., request_id: str | None = ...) -> list[EnhancedFace]: ...
    @overload
    async def enhance_face(self, image: ImageLike, *, output_format: str | None = ..., jpeg_quality: int | None = ...,
                     require_face: bool | None = ..., upscale: bool | None = ..., model: str = ...,
                     timeout_ms: float | None = ..., request_id: str | None = ...) -> EnhancedFace: ...

    async def enhance_face(self, image: ImageLike | ImageBatch, *, output_format: str | None = None,
                           jpeg_quality: int | None = None, require_face: bool | None = None,
                           upscale: bool | None = None, model: str = "face-enhancement",
                           timeout_ms: float | None = None, request_id: str | None = None) -> Any:
        parameters = {"output_format": output_format, "jpeg_quality": jpeg_quality, "require_face": require_face,
                      "upscale": upscale}
        return await self._run(self._face_call(model, image, parameters, timeout_ms, request_id))

    @overload
    async def entails(self, image: ImageBatch, hypothesis: str | Sequence[str],
                premise: str | Sequence[str] | None = ..., *, model: str = ..., timeout_ms: float | None = ...,
                request_id: str | None = ...) -> list[Entailment]: ...
    @overload
    async def entails(self, image: ImageLike, hypothesis: str, premise: str | None = ..., *, model: str = ...,
                timeout_ms: float | None = ..., request_id: str | None = ...) -> Entailment: ...

    async def entails(self, image: ImageLike | ImageBatch, hypothesis: str | Sequence[str],
                      premise: str | Sequence[str] | None = None, *, model: str = "visual-entailment",
                      timeout_ms: float | None = None, request_id: str | None = None) -> Any:
        return await self._run(self._entailment_call(model, image, hypothesis, premise, timeout_ms, request_id))

    async def infer(self, model: str, inputs: Mapping[str, Any], parameters: Mapping[str, Any] | None = None, *,
                    timeout_ms: float | None = None, request_id: str | None = None) -> InferResult:
        return await self._run(self._generic_call(model, inputs, parameters, timeout_ms, request_id))

    async def metadata(self, model: str, *, timeout_ms: float | None = None) -> dict[str, Any]:
        return await self._run(self._metadata_call(model, timeout_ms, None))  # type: ignore[no-any-return]

    async def submit(self, model: str, inputs: Mapping[str, Any], parameters: Mapping[str, Any] | None = None, *,
                     idempotency_key: str | None = None, timeout_ms: float | None = None,
                     request_id: str | None = None) -> Job:
        return await self._run(self._submit_call(model, inputs, parameters, idempotency_key, timeout_ms,
                                                 request_id))

    async def get_job(self, job: Job | str, *, timeout_ms: float | None = None) -> Job:
        return await self._run(self._job_call("GET", job, timeout_ms))

    async def cancel(self, job: Job | str, *, timeout_ms: float | None = None) -> Job:
        return await self._run(self._job_call("DELETE", job, timeout_ms))

    async def wait(self, job: Job | str, timeout: float | None = None, *, polling: Polling | None = None) -> Job:
        """`Client.wait`, awaited: long polls, and `polling`'s pauses after early unfinished answers."""
        polls = LongPolls(job, self.timeout if timeout is None else timeout, polling)
        current = job if isinstance(job, Job) else None
        while current is None or not current.done:
            current = await self._run(self._long_poll_call(polls, current))
            if not current.done:
                await asyncio.sleep(polls.pause())
        return current

    async def result(self, job: Job | str, timeout: float | None = None) -> InferResult:
        return outcome(await self.wait(job, timeout))
