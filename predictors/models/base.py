"""`VisionPredictor`: the lifecycle and hook plumbing every model shares.

A model subclass states its inputs, outputs and parameters and implements four synchronous steps:

- ``load_weights(device)``: read the model directory once (weights, transforms, label tables);
- ``prepare(item, params)``: one decoded item -> model-ready data (worker pool, in parallel);
- ``forward(batch, device)``: a list of prepared items -> one raw result each (device thread,
  ``torch.inference_mode()``, batched across requests, CUDA-OOM split/fallback);
- ``finish(prepared, raw, params)``: -> the item's result, a dict of output name -> value (worker pool).

The async KServe hooks below run them: ``preprocess`` decodes the wire payload (codec layer) and
prepares items, ``predict`` queues them on the model's batcher, ``postprocess`` finishes and encodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import kserve
import torch
from kserve.protocol.infer_type import InferRequest, InferResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from predictors.batching import Batcher
from predictors.codecs import v1, v2
from predictors.codecs.images import decode_image
from predictors.codecs.types import InputSpec, OutputSpec, RawItem, WireRequest
from predictors.device import (
    DeviceLost,
    DeviceRunner,
    Fallback,
    check_precision,
    enable_cudnn_autotuner,
    is_out_of_memory,
    precision_context,
    resolve_device,
    settle,
    wait_for_fallbacks,
    warmup_batch_sizes,
)
from predictors.errors import InvalidInput, ModelNotReady, PredictorError, RequestTimeout
from predictors.settings import ModelConfig, ModelOptions
from predictors.telemetry import tracing
from predictors.telemetry.context import current_request_id
from predictors.telemetry.metrics import Metrics
from predictors.telemetry.requests import RequestRecord, current_request

logger = logging.getLogger(__name__)

Prepared = TypeVar("Prepared")
Raw = TypeVar("Raw")
T = TypeVar("T")
R = TypeVar("R")

#: request parameters every model understands
COMMON_PARAMETERS = frozenset({"timeout_ms"})
TIMEOUT_HEADER = "x-request-timeout-ms"


#: a loader's error message is cut here in the one-line report (torch's run to several sentences)
MAX_REASON_CHARS = 300


class ModelFileError(ValueError):
    """A file of the model directory is missing, unreadable or not what the predictor expects.

    The server stops with one log line naming the file and the reason (the stack trace goes to DEBUG):
    a broken model directory is an operator's problem, not a bug to debug."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@contextlib.contextmanager
def reading(path: Path) -> Iterator[Path]:
    """``with reading(path) as p: ...load p...``: any failure inside becomes a `ModelFileError` naming `path`."""
    try:
        yield path
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise ModelFileError(path, "missing") from None
    except Exception as error:  # noqa: BLE001 - whatever a loader raises, the file is the cause to report
        detail = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        if len(detail) > MAX_REASON_CHARS:
            detail = detail[:MAX_REASON_CHARS] + " ..."
        raise ModelFileError(path, f"cannot be read ({type(error).__name__}: {detail})") from error


class NoParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class _Pending(Generic[Prepared]):
    """What flows from preprocess to predict to postprocess for one request."""

    wire: WireRequest
    params: Any
    prepared: list[Prepared]
    deadline: float | None
    raw: list[Any] = field(default_factory=list)


@dataclass
class _Queued(Generic[Prepared]):
    """One prepared item in the batcher's queue, with what telemetry needs to know about its trip."""

    item: Prepared
    record: RequestRecord | None
    enqueued_ns: int = field(default_factory=time.time_ns)
    #: set on the device thread when its forward pass starts/ends (read after its future resolved)
    started_ns: int = 0
    ended_ns: int = 0
    batch_size: int = 0


class VisionPredictor(kserve.Model, Generic[Prepared, Raw]):
    predictor_name: ClassVar[str]
    inputs: ClassVar[tuple[InputSpec, ...]] = (InputSpec("image", "image"),)
    outputs: ClassVar[tuple[OutputSpec, ...]]
    Parameters: ClassVar[type[BaseModel]] = NoParameters
    #: the model's predictor.json ``options`` (validated at start-up; unknown keys are an error)
    Options: ClassVar[type[ModelOptions]] = ModelOptions

    def __init__(self, name: str, model_dir: Path, config: ModelConfig, metrics: Metrics,
                 workers: Executor) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.config = config
        self.options = self.Options.model_validate(config.options)
        self.metrics = metrics
        self._workers = workers
        self.device = torch.device("cpu")
        self._runner: DeviceRunner | None = None
        self._batcher: Batcher[_Queued[Prepared], Raw | Fallback[Raw]] | None = None
        self._preparing = 0  # requests between preprocess() and their items being queued
        self.load_error: str | None = None
        #: told the model's name when its device is lost (the server then exits for a restart)
        self.on_device_lost: Callable[[str], None] = lambda name: None

    # ---- what subclasses implement -------------------------------------------------------------

    def load_weights(self, device: torch.device) -> None:
        raise NotImplementedError

    def prepare(self, item: Mapping[str, Any], params: Any) -> Prepared:
        raise NotImplementedError

    def forward(self, batch: Sequence[Prepared], device: torch.device) -> Sequence[Raw]:
        raise NotImplementedError

    def finish(self, prepared: Prepared, raw: Raw, params: Any) -> dict[str, Any]:
        raise NotImplementedError

    def warmup_item(self) -> Mapping[str, Any]:
        """A decoded item used for the warm-up inference before the model reports ready."""
        raise NotImplementedError

    # ---- lifecycle -----------------------------------------------------------------------------

    def load(self) -> bool:
        """Load weights and warm up on the device thread; blocking, called once off the event loop."""
        started = time.perf_counter()
        try:
            self.device = resolve_device(self.config.device)
            check_precision(self.device, self.config.precision)
            logger.info("model %s: loading %s from %s on %s", self.name, self.predictor_name,
                        self.model_dir, self.device)
            if self.config.demo_weights:
                logger.warning("model %s: serving DEMO weights (random/crafted, not the published model); "
                               "its answers are meaningless", self.name)
            self.load_weights(self.device)
            weights_s = time.perf_counter() - started
            enable_cudnn_autotuner(self.device)
            self._runner = DeviceRunner(
                self.device,
                on_oom=lambda action: self.metrics.oom_fallbacks.labels(self.name, action).inc(),
                on_device_lost=self._device_lost,
            )
            self._warm_up(self._runner)
        except ModelFileError as error:
            self.load_error = str(error)
            logger.debug("model %s: loading failed", self.name, exc_info=True)
            raise
        except Exception as error:
            self.load_error = f"{type(error).__name__}: {error}"
            raise
        elapsed = time.perf_counter() - started
        self.metrics.model_loaded(self.name, str(self.device), elapsed)
        logger.info("model %s ready on %s in %.2f s (weights %.2f s, warm-up %.2f s)", self.name, self.device,
                    elapsed, weights_s, elapsed - weights_s)
        self.ready = True
        return True

    def _warm_up(self, runner: DeviceRunner) -> None:
        """The warm-up item through every step; its forward passes run on the device thread (where CUDA
        handles, plans and allocator pools are per thread and per shape) at `warmup_batch_sizes`."""
        started = time.perf_counter()
        params = self.parse_parameters({})
        prepared = self.prepare(self.warmup_item(), params)
        sizes = warmup_batch_sizes(self.device, self.config.batching.max_batch_size)

        def forward_each_size() -> list[Raw | Fallback[Raw]]:
            results: list[Raw | Fallback[Raw]] = []
            for size in sizes:
                results = runner.run(self.forward_in_precision, [prepared] * size)
            return results[:1]

        raw = wait_for_fallbacks(runner.executor.submit(forward_each_size).result())
        self.finish(prepared, raw[0], params)
        logger.info("model %s: warmed up on %s at batch sizes %s in %.2f s", self.name, self.device,
                    sizes, time.perf_counter() - started)

    def run_on_device(
        self, forward: Callable[[Sequence[T], torch.device], Sequence[R]], batch: Sequence[T]
    ) -> list[R]:
        """Model work outside the batched `forward` (e.g. per-image detection in `prepare`) on the
        device thread, with its out-of-memory policy; blocks the calling (worker) thread until done."""
        if self._runner is None:
            raise ModelNotReady(f"model '{self.name}' is not loaded")
        return self._runner.call(forward, batch)

    def _device_lost(self, error: DeviceLost) -> None:
        """The runner found the device unusable: stop being ready and tell the server (any thread)."""
        self.ready = False
        self.load_error = str(error)
        self.metrics.model_ready.labels(self.name).set(0)
        self.on_device_lost(self.name)

    def stop(self) -> None:
        self.ready = False
        self.metrics.model_ready.labels(self.name).set(0)

    async def aclose(self) -> None:
        if self._batcher is not None:
            await self._batcher.stop()
        if self._runner is not None:
            self._runner.shutdown()

    def _ensure_batcher(self) -> Batcher[_Queued[Prepared], Raw | Fallback[Raw]]:
        if self._runner is None or not self.ready:
            raise ModelNotReady(f"model '{self.name}' is not ready")
        if self._batcher is None:
            runner = self._runner
            self._batcher = Batcher(
                self.name,
                lambda batch: self._run_batch(runner, batch),
                runner.executor,
                self.config.batching,
                on_batch=self._count_batch,
                on_queue_change=lambda depth: self.metrics.queue_depth.labels(self.name).set(depth),
                arrivals=lambda: self._preparing,
                isolates=is_item_failure,
                on_poison_item=self._count_poison_item,
            )
        return self._batcher

    def _run_batch(self, runner: DeviceRunner, batch: Sequence[_Queued[Prepared]]) -> list[Raw | Fallback[Raw]]:
        """One forward pass (device thread): times it and makes its span, linked to every request in it."""
        started_ns = time.time_ns()
        for queued in batch:
            # A retry of part of a failed batch keeps the first pass: the request's queue wait ended there.
            if not queued.started_ns:
                queued.started_ns, queued.batch_size = started_ns, len(batch)
        span = tracing.batch_span(
            (queued.record for queued in batch),
            {tracing.MODEL: self.name, tracing.DEVICE: str(self.device), tracing.BATCH_SIZE: len(batch)},
        )
        try:
            return runner.run(self.forward_in_precision, [queued.item for queued in batch])
        except BaseException as error:
            if span is not None:
                span.record_exception(error)
                span.set_status(tracing.Status(tracing.StatusCode.ERROR, type(error).__name__))
            raise
        finally:
            ended_ns = time.time_ns()
            for queued in batch:
                queued.ended_ns = ended_ns
            self.metrics.forward_duration.labels(self.name).observe((ended_ns - started_ns) / 1e9)
            if span is not None:
                span.end(end_time=ended_ns)

    def _count_poison_item(self, error: BaseException) -> None:
        # A documented error (the item's own fault, e.g. its content) is an answer, not a poison item.
        if not isinstance(error, PredictorError):
            self.metrics.poison_items.labels(self.name).inc()

    def forward_in_precision(self, batch: Sequence[Prepared], device: torch.device) -> Sequence[Raw]:
        """`forward` under the model's `precision` (autocast for fp16/bf16): what the device thread runs."""
        with precision_context(device, self.config.precision):
            return self.forward(batch, device)

    def _count_batch(self, size: int) -> None:
        self.metrics.batch_size.labels(self.name).observe(size)
        self.metrics.items.labels(self.name).inc(size)

    async def _settle(self, raw: Sequence[Raw | Fallback[Raw]], deadline: float | None) -> list[Raw]:
        """Wait for the items of the request recomputed on the CPU after an out-of-memory error."""
        if deadline is None or not any(isinstance(r, Fallback) for r in raw):
            return await settle(raw)
        try:
            return await asyncio.wait_for(settle(raw), timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise RequestTimeout(f"the request's deadline passed before model '{self.name}' answered") from None

    @property
    def queue_depth(self) -> int:
        return 0 if self._batcher is None else self._batcher.depth

    # ---- metadata ------------------------------------------------------------------------------

    def get_input_types(self) -> list[dict[str, Any]]:
        return [spec.metadata() for spec in self.inputs]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [spec.metadata() for spec in self.outputs]

    # ---- KServe hooks --------------------------------------------------------------------------

    def validate(self, payload: Any) -> Any:
        return payload

    async def preprocess(self, payload: dict[str, Any] | InferRequest,
                         headers: dict[str, str] | None = None) -> _Pending[Prepared]:
        # Counted from here until predict() queues the items: the batcher waits for them only.
        self._preparing += 1
        try:
            return await self._preprocess(payload, headers)
        except BaseException:
            self._arrival_ended()
            raise

    def _arrival_ended(self) -> None:
        self._preparing -= 1
        if self._batcher is not None:
            self._batcher.wake()

    async def _preprocess(self, payload: dict[str, Any] | InferRequest,
                          headers: dict[str, str] | None) -> _Pending[Prepared]:
        record = current_request.get()
        with tracing.stage_span(record, "preprocess"):
            if isinstance(payload, InferRequest):
                wire = v2.decode_request(payload, self.inputs, self.outputs,
                                         self.config.max_items_per_request)
            else:
                wire = v1.decode_request(payload, self.inputs, self.config.max_items_per_request)
            if record is not None:
                record.model, record.device, record.items = self.name, str(self.device), len(wire.items)
                record.set_attribute(tracing.DEVICE, record.device)
                record.set_attribute(tracing.ITEMS, record.items)
            deadline = self._deadline(wire.parameters, headers or {})
            params = self.parse_parameters(
                {k: v for k, v in wire.parameters.items() if k not in COMMON_PARAMETERS}
            )
            loop = asyncio.get_running_loop()
            prepared = await asyncio.gather(
                *(loop.run_in_executor(self._workers, self._decode_and_prepare, item, params)
                  for item in wire.items)
            )
        return _Pending(wire, params, list(prepared), deadline)

    async def predict(self, payload: _Pending[Prepared], headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> _Pending[Prepared]:
        record = current_request.get()
        queued = [_Queued(item, record) for item in payload.prepared]
        self._preparing -= 1
        try:
            raw = await self._ensure_batcher().submit(queued, payload.deadline)
            payload.raw = await self._settle(raw, payload.deadline)
        finally:
            _note_batches(record, queued)
        return payload

    async def postprocess(self, result: _Pending[Prepared], headers: dict[str, str] | None = None,
                          response_headers: dict[str, str] | None = None) -> dict[str, Any] | InferResponse:
        with tracing.stage_span(current_request.get(), "postprocess"):
            loop = asyncio.get_running_loop()
            results = await asyncio.gather(
                *(loop.run_in_executor(self._workers, self.finish, prepared, raw, result.params)
                  for prepared, raw in zip(result.prepared, result.raw, strict=True))
            )
            if result.wire.protocol == "v1":
                return v1.encode_response(results, self.outputs)
            return v2.encode_response(result.wire, results, self.outputs, self.name, current_request_id.get())

    # ---- helpers -------------------------------------------------------------------------------

    def parse_parameters(self, raw: Mapping[str, Any]) -> Any:
        # strict: a JSON `true` is not the integer 1 and "3" is not a number
        try:
            return self.Parameters.model_validate(dict(raw), strict=True)
        except ValidationError as error:
            problems = "; ".join(
                f"parameters.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            raise InvalidInput(problems) from None

    def _decode_and_prepare(self, item: RawItem, params: Any) -> Prepared:
        decoded: dict[str, Any] = {}
        for spec in self.inputs:
            if spec.name not in item:
                continue
            value = item[spec.name]
            if spec.kind == "image":
                assert isinstance(value, bytes)
                decoded[spec.name] = decode_image(value, self.config.image_limits, spec.name)
            else:
                decoded[spec.name] = value
        return self.prepare(decoded, params)

    @staticmethod
    def _deadline(parameters: Mapping[str, Any], headers: Mapping[str, str]) -> float | None:
        if "timeout_ms" in parameters:
            value = parameters["timeout_ms"]
            # typed like every other parameter: a number, not a boolean or a string
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidInput(f"parameters.timeout_ms must be a number of milliseconds, got {value!r}")
            timeout_ms = float(value)
        elif TIMEOUT_HEADER in headers:
            try:
                timeout_ms = float(headers[TIMEOUT_HEADER])
            except ValueError:
                raise InvalidInput(f"X-Request-Timeout-Ms must be a number of milliseconds, got "
                                   f"{headers[TIMEOUT_HEADER]!r}") from None
        else:
            return None
        if not 0 < timeout_ms < float("inf"):
            raise InvalidInput("timeout_ms must be a positive, finite number of milliseconds")
        return time.monotonic() + timeout_ms / 1000.0


def is_item_failure(error: BaseException) -> bool:
    """Whether a failed forward pass may be retried in parts to find the item that fails: not when the
    device failed (CUDA out-of-memory was already split by the device runner; a lost device fails all)."""
    return not isinstance(error, DeviceLost) and not is_out_of_memory(error)


def _note_batches(record: RequestRecord | None, queued: Sequence[_Queued[Any]]) -> None:
    """The request's queue wait (until its first forward pass started) and predict time (until its last
    ended), as stages of `record` and a ``queue`` child span; the ``predict`` spans are the batches'."""
    if record is None or not queued:
        return
    enqueued = min(q.enqueued_ns for q in queued)
    started = [q.started_ns for q in queued if q.started_ns]
    first_start = min(started) if started else time.time_ns()
    record.stages["queue"] = max(0, first_start - enqueued) / 1e9
    tracing.retro_span(record, "queue", enqueued, first_start)
    ended = [q.ended_ns for q in queued if q.ended_ns]
    if started and ended:
        record.stages["predict"] = max(0, max(ended) - first_start) / 1e9
    record.batch_size = max((q.batch_size for q in queued), default=0)
    if record.batch_size:
        record.set_attribute(tracing.BATCH_SIZE, record.batch_size)
