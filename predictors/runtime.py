"""`ModelRuntime`: one model's way from decoded wire items to results, the only way into a predictor.

It owns what every model shares, around the four steps of the `Predictor` contract (`models/base.py`):

- load and warm-up (weights, then the warm-up item at `warmup_batch_sizes` on the device thread);
- the worker pool (image decoding and ``prepare`` in parallel, ``finish``);
- the `Batcher` (bounded queue, deadlines, cancellation, poison items isolated by `is_item_failure`),
  whose arrivals are counted here from the start of `infer` until the request's items are queued; it is
  told how long each request has been at the server (since its record's `started` at the edge, else since
  `infer` began), how long requests take from the start of `infer` until queued and from the end of their
  forward pass until ``finish`` is done, for its policy to plan with;
- the `DeviceRunner` (device thread, CUDA out-of-memory split and CPU fallback, a lost device -> not
  ready and `on_device_lost`) and the `Fallback` items settled within the request's deadline;
- precision (`forward_in_precision`), stage times, spans and the model's metrics.

Transports drive it with ``await runtime.infer(items, parameters, deadline)``: the KServe adapter
(`dataplane/kserve_model.py`), the benchmark's in-process path and the tests.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic

import torch

from predictors.batching import Batcher
from predictors.codecs.images import check_image, decode_image, estimated_decode_seconds
from predictors.codecs.types import RawItem
from predictors.device import (
    SAME_PRIORITY,
    DeviceLost,
    DeviceRunner,
    Fallback,
    LowerPriority,
    enable_cudnn_autotuner,
    is_out_of_memory,
    resolve_device,
    settle,
    wait_for_fallbacks,
    warmup_batch_sizes,
)
from predictors.errors import ModelNotReady, PredictorError, RequestTimeout
from predictors.models.base import ModelFileError, Predictor, Prepared, Raw
from predictors.precision import Bf16Support, ResolvedPrecision, autocast_to, read_bf16_support, resolve_precision
from predictors.settings import ModelConfig
from predictors.telemetry import tracing
from predictors.telemetry.metrics import Metrics
from predictors.telemetry.requests import RequestRecord, current_request

logger = logging.getLogger(__name__)

#: A request's images expected to decode within this time, all together (`estimated_decode_seconds`), are
#: checked on the event loop at submission (`validate`): about what the loop spends on the request's own
#: handling, and less than the trip to the worker pool and back costs on a busy server (docs/performance.md,
#: "What the server's defaults rest on"). Larger images, and whatever exceeds the budget, are decoded in the pool.
INLINE_DECODE_BUDGET_SECONDS = 0.001


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


class ModelRuntime(Generic[Prepared, Raw]):
    """Runs one `Predictor`: `load` once (blocking, off the event loop), then `infer` per request."""

    def __init__(self, predictor: Predictor[Prepared, Raw], metrics: Metrics, workers: Executor,
                 cpu_forward_priority: LowerPriority = SAME_PRIORITY,
                 background_workers: Executor | None = None,
                 bf16_support: Callable[[torch.device], Bf16Support] = read_bf16_support) -> None:
        self.predictor = predictor
        self.cpu_forward_priority = cpu_forward_priority
        self.name = predictor.name
        self.metrics = metrics
        self._workers = workers
        #: where the CPU work of background requests (`RequestRecord.background`: asynchronous jobs) runs
        self._background_workers = background_workers or workers
        self.device = torch.device("cpu")
        #: what the forward pass runs in, decided at `load` from the setting and the device (`bf16_support`)
        self.precision: ResolvedPrecision | None = None
        self._bf16_support = bf16_support
        self.ready = False
        self.load_error: str | None = None
        #: told the model's name when its device is lost (the server then exits for a restart)
        self.on_device_lost: Callable[[str], None] = lambda name: None
        self._runner: DeviceRunner | None = None
        self._batcher: Batcher[_Queued[Prepared], Raw | Fallback[Raw]] | None = None
        self._arrivals = 0  # requests inside `infer` whose items are not queued yet

    @property
    def config(self) -> ModelConfig:
        return self.predictor.config

    @property
    def predictor_name(self) -> str:
        return self.predictor.predictor_name

    @property
    def queue_depth(self) -> int:
        return 0 if self._batcher is None else self._batcher.depth

    @property
    def free_slots(self) -> int:
        """Items the batcher's queue takes before it refuses requests (503 SERVICE_BUSY): the room that
        background work (asynchronous jobs) may fill without crowding out synchronous requests."""
        return max(0, self.config.batching.max_queue - self.queue_depth)

    # ---- lifecycle -----------------------------------------------------------------------------

    def load(self) -> bool:
        """Load weights and warm up on the device thread; blocking, called once off the event loop."""
        predictor, config = self.predictor, self.config
        started = time.perf_counter()
        try:
            self.device = resolve_device(config.device)
            self.precision = resolve_precision(config.precision, self.device, self._bf16_support)
            if self.precision.reason:
                logger.warning("model %s: precision %s asked for, serving %s: %s", self.name,
                               self.precision.requested, self.precision.effective, self.precision.reason)
            logger.info("model %s: loading %s from %s on %s in %s", self.name, predictor.predictor_name,
                        predictor.model_dir, self.device, self.precision.effective)
            if config.demo_weights:
                logger.warning("model %s: serving DEMO weights (random/crafted, not the published model); "
                               "its answers are meaningless", self.name)
            predictor.load_weights(self.device)
            weights_s = time.perf_counter() - started
            enable_cudnn_autotuner(self.device)
            self._runner = DeviceRunner(
                self.device,
                on_oom=lambda action: self.metrics.oom_fallbacks.labels(self.name, action).inc(),
                on_device_lost=self._device_lost,
                cpu_priority=self.cpu_forward_priority,
            )
            predictor.bind_device(self._runner.call)
            self._warm_up(self._runner)
        except ModelFileError as error:
            self.load_error = str(error)
            logger.debug("model %s: loading failed", self.name, exc_info=True)
            raise
        except Exception as error:
            self.load_error = f"{type(error).__name__}: {error}"
            raise
        elapsed = time.perf_counter() - started
        self.metrics.model_loaded(self.name, str(self.device), elapsed, config.batching.max_queue)
        self.metrics.model_precision(self.name, self.precision.requested, self.precision.effective)
        outputs = predictor.answer_outputs
        self.metrics.answers_expected(self.name, top_score=outputs.top_score is not None,
                                      quality=outputs.quality is not None, faces=outputs.faces is not None,
                                      review=outputs.review is not None)
        logger.info("model %s ready on %s in %.2f s (weights %.2f s, warm-up %.2f s)", self.name, self.device,
                    elapsed, weights_s, elapsed - weights_s)
        # The loading code's cyclic garbage goes now, before any request waits on this model: a full
        # collection stops every thread for ~0.3 s, and the server then freezes what is left
        # (`freeze_startup_heap`), which would keep such garbage for good.
        gc.collect()
        self.ready = True
        return True

    def _warm_up(self, runner: DeviceRunner) -> None:
        """The warm-up item through every step; its forward passes run on the device thread (where CUDA
        handles, plans and allocator pools are per thread and per shape) at `warmup_batch_sizes`."""
        started = time.perf_counter()
        params = self.predictor.parse_parameters({})
        prepared = self.predictor.prepare_warmup(params)
        sizes = warmup_batch_sizes(self.device, self.config.batching.max_batch_size)

        def forward_each_size() -> list[Raw | Fallback[Raw]]:
            results: list[Raw | Fallback[Raw]] = []
            for size in sizes:
                results = runner.run(self.forward_in_precision, [prepared] * size)
            return results[:1]

        raw = wait_for_fallbacks(runner.executor.submit(forward_each_size).result())
        self.predictor.finish(prepared, raw[0], params)
        logger.info("model %s: warmed up on %s at batch sizes %s in %.2f s", self.name, self.device,
                    sizes, time.perf_counter() - started)

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

    # ---- one request ---------------------------------------------------------------------------

    async def infer(self, items: Sequence[RawItem], parameters: Mapping[str, Any],
                    deadline: float | None) -> list[dict[str, Any]]:
        """Wire items (image bytes, texts) and the model's parameters -> one result per item.

        Decoding and ``prepare`` run in the worker pool, the forward passes in the batcher's batches on
        the device thread, ``finish`` in the worker pool; `deadline` (``time.monotonic()``) bounds the
        wait. The request's stages and spans go to the current request record, if any."""
        record = current_request.get()
        began = time.perf_counter()
        # A latency target counts from the request's arrival at the server (its read and decoding included).
        arrived = record.started if record is not None else began
        if self._batcher is not None:
            # Refused before its items are decoded: a busy server spends nothing on work it turns away.
            self._batcher.admit(len(items), began - arrived)
        # Counted from here until the items are queued: the batcher waits for them only.
        self._arrivals += 1
        arriving = True
        try:
            with tracing.stage_span(record, "preprocess"):
                if record is not None:
                    record.model, record.device, record.items = self.name, str(self.device), len(items)
                    record.set_attribute(tracing.DEVICE, record.device)
                    record.set_attribute(tracing.ITEMS, record.items)
                params = self.predictor.parse_parameters(parameters)
                loop = asyncio.get_running_loop()
                workers = self._background_workers if record is not None and record.background else self._workers
                prepared = await asyncio.gather(
                    *(loop.run_in_executor(workers, self._decode_and_prepare, item, params)
                      for item in items)
                )
            queued = [_Queued(item, record) for item in prepared]
            self._arrivals -= 1
            arriving = False
            try:
                batcher = self._ensure_batcher()
                queued_at = time.perf_counter()
                batcher.observe_preprocess(queued_at - began)
                raw = await batcher.submit(queued, deadline, spent=queued_at - arrived)
                settled = await self._settle(raw, deadline)
            finally:
                _note_batches(record, queued)
        finally:
            if arriving:
                self._arrival_ended()
        with tracing.stage_span(record, "postprocess"):
            results = await asyncio.gather(
                *(loop.run_in_executor(workers, self.predictor.finish, item, raw_item, params)
                  for item, raw_item in zip(prepared, settled, strict=True))
            )
        self._learn_after_forward(batcher, queued, raw)
        self._record_answers(results)
        return list(results)

    @staticmethod
    def _learn_after_forward(batcher: Batcher[Any, Any], queued: Sequence[_Queued[Any]],
                             raw: Sequence[object]) -> None:
        """The time from the end of the request's last forward pass until its answer is finished (the
        part of a latency target after the queue); items recomputed on the CPU after an out-of-memory
        error are left out, their recomputation is no part of it."""
        if any(isinstance(r, Fallback) for r in raw) or not all(q.ended_ns for q in queued):
            return
        forward_ended = max(q.ended_ns for q in queued)
        batcher.observe_after_forward(max(0, time.time_ns() - forward_ended) / 1e9)

    def _arrival_ended(self) -> None:
        self._arrivals -= 1
        if self._batcher is not None:
            self._batcher.wake()

    async def validate(self, items: Sequence[RawItem], parameters: Mapping[str, Any]) -> None:
        """Raise the error `infer` would raise for these parameters or for an item that does not decode
        (images checked with the model's limits: `check_image`), without running the model. Images cheap to
        decode (`INLINE_DECODE_BUDGET_SECONDS` for the request, estimated for a full decode: an upper bound
        of the check's cost) are checked here, on the event loop; the others in the worker pool."""
        self.predictor.parse_parameters(parameters)
        budget = INLINE_DECODE_BUDGET_SECONDS
        in_pool: list[RawItem] = []
        for item in items:
            cost = self._estimated_decode_seconds(item)
            if cost <= budget:
                budget -= cost
                self._check(item)
            else:
                in_pool.append(item)
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._workers, self._check, item) for item in in_pool))

    def _estimated_decode_seconds(self, item: RawItem) -> float:
        return sum(estimated_decode_seconds(value) for spec in self.predictor.inputs
                   if spec.kind == "image" and isinstance(value := item.get(spec.name), bytes))

    def _decode_and_prepare(self, item: RawItem, params: Any) -> Prepared:
        return self.predictor.prepare(self._decode(item), params)

    def _check(self, item: RawItem) -> None:
        for spec in self.predictor.inputs:
            if spec.kind == "image" and spec.name in item:
                value = item[spec.name]
                assert isinstance(value, bytes)
                check_image(value, self.config.image_limits, spec.name)

    def _decode(self, item: RawItem) -> dict[str, Any]:
        decoded: dict[str, Any] = {}
        for spec in self.predictor.inputs:
            if spec.name not in item:
                continue
            value = item[spec.name]
            if spec.kind == "image":
                assert isinstance(value, bytes)
                decoded[spec.name] = decode_image(value, self.config.image_limits, spec.name)
            else:
                decoded[spec.name] = value
        return decoded

    def _record_answers(self, results: Sequence[Mapping[str, Any]]) -> None:
        """The answer signals of a request's results (`Predictor.answer_outputs`), read from the typed
        results: what a canary's answers are compared with stable's on."""
        outputs, metrics, name = self.predictor.answer_outputs, self.metrics, self.name
        metrics.results.labels(name).inc(len(results))
        for result in results:
            if outputs.top_score is not None and (scores := result.get(outputs.top_score)) is not None \
                    and len(scores):
                metrics.answer_top_score.labels(name).observe(float(max(scores)))
            if outputs.quality is not None and (quality := result.get(outputs.quality)) is not None:
                metrics.answer_quality.labels(name).observe(float(quality))
            if outputs.faces is not None and (faces := result.get(outputs.faces)) is not None:
                metrics.answer_faces.labels(name).observe(int(faces))
        if outputs.review is not None:
            flagged = sum(1 for result in results if result.get(outputs.review) is True)
            if flagged:
                metrics.review_flags.labels(name).inc(flagged)

    # ---- the batcher and the device thread -----------------------------------------------------

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
                arrivals=lambda: self._arrivals,
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

    def forward_in_precision(self, batch: Sequence[Prepared], device: torch.device) -> Sequence[Raw]:
        """`forward` under the model's precision on `device` (autocast for fp16/bf16): what the device thread
        runs, after `load` decided the precision."""
        if self.precision is None:
            raise ModelNotReady(f"model '{self.name}' is not loaded")
        with autocast_to(device, self.precision.on(device)):
            return self.predictor.forward(batch, device)

    def run_forward(self, batch: Sequence[Prepared]) -> list[Raw | Fallback[Raw]]:
        """One forward pass of `batch` in precision on the device thread, outside the batcher (the
        benchmark's timing loop); blocks the calling thread."""
        if self._runner is None:
            raise ModelNotReady(f"model '{self.name}' is not loaded")
        return self._runner.run(self.forward_in_precision, batch)

    @property
    def device_executor(self) -> Executor:
        """The device thread (e.g. for a FLOP counter entered there while `run_forward` runs)."""
        if self._runner is None:
            raise ModelNotReady(f"model '{self.name}' is not loaded")
        return self._runner.executor

    def _count_poison_item(self, error: BaseException) -> None:
        # A documented error (the item's own fault, e.g. its content) is an answer, not a poison item.
        if not isinstance(error, PredictorError):
            self.metrics.poison_items.labels(self.name).inc()

    def _count_batch(self, size: int) -> None:
        self.metrics.batch_size.labels(self.name).observe(size)
        self.metrics.batch_size_target.labels(self.name).set(size)
        self.metrics.items.labels(self.name).inc(size)

    async def _settle(self, raw: Sequence[Raw | Fallback[Raw]], deadline: float | None) -> list[Raw]:
        """Wait for the items of the request recomputed on the CPU after an out-of-memory error."""
        if deadline is None or not any(isinstance(r, Fallback) for r in raw):
            return await settle(raw)
        try:
            return await asyncio.wait_for(settle(raw), timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise RequestTimeout(f"the request's deadline passed before model '{self.name}' answered") from None


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
