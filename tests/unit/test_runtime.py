"""`ModelRuntime` with a tiny fake predictor, driven directly (no KServe): batching across requests whose
items are still being prepared, review flags, the warm-up item, the device capability it binds, and what
it tells a latency target about each request's time around the queue."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from prometheus_client import CollectorRegistry

from predictors.codecs.types import AnswerOutputs, OutputSpec
from predictors.errors import ModelNotReady, ServiceBusy
from predictors.kserve_compat import metric_value
from predictors.models.base import ModelConfig, Predictor
from predictors.runtime import ModelRuntime
from predictors.settings import BatchingConfig
from predictors.telemetry.metrics import Metrics
from predictors.telemetry.requests import RequestRecord, current_request

#: an item this wide takes a while to prepare; one this wide fails in prepare
SLOW_WIDTH = 7
FAILING_WIDTH = 9
#: the batcher's latency budget: far longer than any test waits
LATENCY_MS = 5000


class Widths(Predictor[int, int]):
    predictor_name = "widths"
    outputs = (OutputSpec("width", "INT64"), OutputSpec("flagged", "BOOL"), OutputSpec("scores", "FP32", (2,)),
               OutputSpec("quality", "FP32"), OutputSpec("faces", "INT32"))
    answer_outputs = AnswerOutputs(top_score="scores", quality="quality", faces="faces", review="flagged")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.batches: list[list[int]] = []
        self.warmup_prepared = 0

    def load_weights(self, device: torch.device) -> None:
        pass

    def prepare(self, item: Any, params: Any) -> int:
        width = int(item["image"].width)
        if width == SLOW_WIDTH:
            time.sleep(0.5)
        if width == FAILING_WIDTH:
            raise ValueError("cannot prepare this one")
        return width

    def prepare_warmup(self, params: Any) -> int:
        self.warmup_prepared += 1
        return super().prepare_warmup(params)

    def forward(self, batch: Sequence[int], device: torch.device) -> list[int]:
        self.batches.append(list(batch))
        return list(batch)

    def finish(self, prepared: int, raw: int, params: Any) -> dict[str, Any]:
        # every result, the warm-up's too, asks for a review; the answer signals follow the width
        return {"width": raw, "flagged": True, "scores": [1 - raw / 10, raw / 10], "quality": raw / 10,
                "faces": raw}

    def warmup_item(self) -> dict[str, Any]:
        return {"image": Image.new("RGB", (3, 3))}


def png(width: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, 2)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def runtime() -> Iterator[ModelRuntime[int, int]]:
    pool = ThreadPoolExecutor(4)
    config = ModelConfig(device="cpu", batching=BatchingConfig(max_batch_size=8, max_latency_ms=LATENCY_MS))
    model = ModelRuntime(Widths("widths", Path("."), config), Metrics(CollectorRegistry()), pool)
    model.load()
    yield model
    model._runner.shutdown()  # type: ignore[union-attr]
    pool.shutdown()


def test_a_request_still_being_prepared_joins_the_batch_and_a_lone_one_leaves_at_once(
        runtime: ModelRuntime[int, int]) -> None:
    predictor: Widths = runtime.predictor  # type: ignore[assignment]

    async def scenario() -> tuple[list[Any], float]:
        both = await asyncio.gather(runtime.infer([{"image": png(5)}], {}, None),
                                    runtime.infer([{"image": png(SLOW_WIDTH)}], {}, None))
        with pytest.raises(ValueError):
            await runtime.infer([{"image": png(FAILING_WIDTH)}], {}, None)
        started = time.monotonic()
        await runtime.infer([{"image": png(4)}], {}, None)
        return list(both), time.monotonic() - started

    both, lone_seconds = asyncio.run(scenario())
    assert [result["width"] for (result,) in both] == [5, SLOW_WIDTH]
    # the fast item waited for the slow one's preparation (an arrival counted inside `infer`) ...
    assert predictor.batches[1:] == [[5, SLOW_WIDTH], [4]]
    # ... and nobody is counted as arriving afterwards, not even the request whose prepare failed
    assert lone_seconds < LATENCY_MS / 1000 / 2


def test_review_flags_of_requests_are_counted_not_the_warm_ups(runtime: ModelRuntime[int, int]) -> None:
    predictor: Widths = runtime.predictor  # type: ignore[assignment]
    assert predictor.warmup_prepared == 1 and predictor.batches == [[3]]  # the warm-up ran, via prepare_warmup
    flags = runtime.metrics.review_flags.labels("widths")
    assert metric_value(flags) == 0
    asyncio.run(runtime.infer([{"image": png(5)}, {"image": png(6)}], {}, None))
    assert metric_value(flags) == 2


def test_answer_signals_are_recorded_from_the_results_of_requests(runtime: ModelRuntime[int, int]) -> None:
    """One observation per result of a request (the warm-up's width-3 item is not one): the top-1 score is the
    largest of the scores, quality and faces as answered."""
    registry = runtime.metrics.registry

    def sample(name: str) -> float | None:
        return registry.get_sample_value(name, {"model": "widths"})

    # created at 0 when the model loaded (the warm-up is not counted)
    assert sample("predictors_results_total") == 0 and sample("predictors_answer_top_score_count") == 0
    asyncio.run(runtime.infer([{"image": png(2)}, {"image": png(6)}], {}, None))
    assert sample("predictors_results_total") == 2
    assert sample("predictors_answer_top_score_count") == 2
    assert sample("predictors_answer_top_score_sum") == pytest.approx(0.8 + 0.6)
    assert registry.get_sample_value("predictors_answer_top_score_bucket", {"model": "widths", "le": "0.7"}) == 1
    assert sample("predictors_answer_quality_score_sum") == pytest.approx(0.2 + 0.6)
    assert sample("predictors_answer_faces_sum") == 8
    assert registry.get_sample_value("predictors_answer_faces_bucket", {"model": "widths", "le": "2.0"}) == 1


def test_the_device_capability_is_bound_by_the_runtime() -> None:
    predictor = Widths("widths", Path("."), ModelConfig(device="cpu"))
    with pytest.raises(ModelNotReady):
        predictor.run_on_device(predictor.forward, [1])
    pool = ThreadPoolExecutor(1)
    runtime = ModelRuntime(predictor, Metrics(CollectorRegistry()), pool)
    runtime.load()
    try:
        threads: list[str] = []

        def forward(batch: Sequence[int], device: torch.device) -> list[int]:
            threads.append(threading.current_thread().name)
            return [2 * value for value in batch]

        assert predictor.run_on_device(forward, [1, 2]) == [2, 4]
        assert threads and threads[0].startswith("torch-cpu")
    finally:
        runtime._runner.shutdown()  # type: ignore[union-attr]
        pool.shutdown()


class SlowForward(Widths):
    """Remembers what it prepared; a batch holding width SLOW_WIDTH takes 0.3 s on the device."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.prepared: list[int] = []

    def prepare(self, item: Any, params: Any) -> int:
        self.prepared.append(int(item["image"].width))
        return int(item["image"].width)

    def forward(self, batch: Sequence[int], device: torch.device) -> list[int]:
        if SLOW_WIDTH in batch:
            time.sleep(0.3)
        return super().forward(batch, device)


@contextlib.contextmanager
def serving(predictor: type[SlowForward], batching: BatchingConfig) -> Iterator[ModelRuntime[int, int]]:
    """A loaded runtime of `predictor` (named "slow") with `batching`, shut down afterwards."""
    pool = ThreadPoolExecutor(4)
    config = ModelConfig(device="cpu", batching=batching)
    runtime = ModelRuntime(predictor("slow", Path("."), config), Metrics(CollectorRegistry()), pool)
    runtime.load()
    try:
        yield runtime
    finally:
        runtime._runner.shutdown()  # type: ignore[union-attr]
        pool.shutdown()


def test_a_refused_request_is_turned_away_before_its_items_are_prepared_and_the_batch_size_is_a_gauge() -> None:
    with serving(SlowForward, BatchingConfig(max_batch_size=2, max_latency_ms=0, max_queue=2)) as runtime:
        predictor: SlowForward = runtime.predictor  # type: ignore[assignment]
        chosen = runtime.metrics.batch_size_target.labels("slow")
        asyncio.run(a_request_refused_while_the_queue_is_full(runtime, chosen))
    assert 4 not in predictor.prepared and {5, 6, SLOW_WIDTH} <= set(predictor.prepared)
    assert predictor.batches[-1] == [5, 6] and metric_value(chosen) == 2


async def a_request_refused_while_the_queue_is_full(runtime: ModelRuntime[int, int], chosen: Any) -> None:

    running = asyncio.create_task(runtime.infer([{"image": png(SLOW_WIDTH)}], {}, None))
    await asyncio.sleep(0.1)
    assert metric_value(chosen) == 1
    queued = asyncio.create_task(runtime.infer([{"image": png(5)}, {"image": png(6)}], {}, None))
    await asyncio.sleep(0.1)  # prepared and queued: the queue (2 items) is full
    with pytest.raises(ServiceBusy):
        await runtime.infer([{"image": png(4)}], {}, None)
    await asyncio.gather(running, queued)


class SlowFinish(SlowForward):
    """Takes FINISH_SECONDS to finish each answer."""

    def finish(self, prepared: int, raw: int, params: Any) -> dict[str, Any]:
        time.sleep(FINISH_SECONDS)
        return super().finish(prepared, raw, params)


FINISH_SECONDS = 0.2


def test_a_latency_target_counts_from_the_arrival_at_the_edge_and_leaves_room_for_the_finish() -> None:
    batching = BatchingConfig(max_batch_size=2, latency_target_ms=1000, max_queue_delay_ms=1000)
    with serving(SlowFinish, batching) as runtime:
        predictor: SlowFinish = runtime.predictor  # type: ignore[assignment]
        asyncio.run(a_request_too_old_for_the_target(runtime))
    assert 4 not in predictor.prepared and {5, 6, SLOW_WIDTH} <= set(predictor.prepared)


def arrived(seconds_ago: float) -> None:
    """The current request reached the edge `seconds_ago`."""
    current_request.set(RequestRecord("r", "v2", "infer", started=time.perf_counter() - seconds_ago))


async def a_request_too_old_for_the_target(runtime: ModelRuntime[int, int]) -> None:
    await runtime.infer([{"image": png(5)}], {}, None)  # an idle device: taken, and timed
    batcher = runtime._batcher
    assert batcher is not None and batcher.policy.preprocess_time.known
    assert FINISH_SECONDS <= batcher.policy.after_forward_time.high < 0.8
    running = asyncio.create_task(runtime.infer([{"image": png(SLOW_WIDTH)}], {}, None))
    await asyncio.sleep(0.1)  # its forward pass runs: the next request is planned
    arrived(0.1)
    accepted = asyncio.create_task(runtime.infer([{"image": png(6)}], {}, None))
    # 0.9 s at the server already: with its finish it cannot make 1 s (its queue wait and forward pass
    # alone would: an age counted from queueing, or no room for the finish, would have taken it)
    arrived(0.9)
    with pytest.raises(ServiceBusy, match="latency target"):
        await runtime.infer([{"image": png(4)}], {}, None)
    await asyncio.gather(running, accepted)


class ThreadNoting(Widths):
    """Notes the thread each item is prepared and finished on."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.threads: list[tuple[str, str]] = []

    def prepare(self, item: Any, params: Any) -> int:
        self.threads.append(("prepare", threading.current_thread().name))
        return super().prepare(item, params)

    def finish(self, prepared: int, raw: int, params: Any) -> dict[str, Any]:
        self.threads.append(("finish", threading.current_thread().name))
        return super().finish(prepared, raw, params)


def test_a_background_requests_cpu_work_runs_on_the_background_workers() -> None:
    """An asynchronous job's run (`RequestRecord.background`) decodes, prepares and finishes on the pool
    given for it; a request somebody waits for on the usual one."""
    config = ModelConfig(device="cpu", batching=BatchingConfig(max_batch_size=2, max_latency_ms=LATENCY_MS))
    predictor = ThreadNoting("widths", Path("."), config)
    with ThreadPoolExecutor(2, thread_name_prefix="usual") as usual, \
            ThreadPoolExecutor(2, thread_name_prefix="background") as background:
        runtime = ModelRuntime(predictor, Metrics(CollectorRegistry()), usual, background_workers=background)
        runtime.load()
        predictor.threads.clear()  # the warm-up's

        async def request(background_work: bool) -> list[tuple[str, str]]:
            predictor.threads.clear()
            current_request.set(RequestRecord("r", "v1", background=background_work))
            await runtime.infer([{"image": png(3)}], {}, None)
            return list(predictor.threads)

        async def both() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:  # one loop: the batcher's
            return await request(True), await request(False)

        try:
            on_background, on_usual = asyncio.run(both())
        finally:
            runtime._runner.shutdown()  # type: ignore[union-attr]
    assert [stage for stage, _ in on_background] == ["prepare", "finish"] == [stage for stage, _ in on_usual]
    assert all(name.startswith("background") for _, name in on_background), on_background
    assert all(name.startswith("usual") for _, name in on_usual), on_usual


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((width, height), 60).convert("RGB").save(buffer, "JPEG")  # noise: mostly pixel data
    return buffer.getvalue()


def test_the_submit_check_decodes_cheap_images_on_the_loop_and_the_others_in_the_pool(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`validate`: images expected to decode within INLINE_DECODE_BUDGET_SECONDS (per request) are decoded
    on the event loop's thread, the rest in the worker pool; a truncated cheap image is refused on the loop
    with the pool's error."""
    from predictors import runtime as runtime_module
    from predictors.codecs.images import check_image, estimated_decode_seconds
    from predictors.errors import InvalidImage

    decoded_on: list[str] = []

    def noting_check(*args: Any, **kwargs: Any) -> None:
        decoded_on.append(threading.current_thread().name)
        check_image(*args, **kwargs)

    monkeypatch.setattr(runtime_module, "check_image", noting_check)
    small, large, tile = jpeg(64, 64), jpeg(1024, 1024), jpeg(128, 128)
    budget = runtime_module.INLINE_DECODE_BUDGET_SECONDS
    assert estimated_decode_seconds(small) < budget < estimated_decode_seconds(large)
    config = ModelConfig(device="cpu", batching=BatchingConfig(max_batch_size=2, max_latency_ms=LATENCY_MS))
    with ThreadPoolExecutor(2, thread_name_prefix="pool") as pool:
        runtime = ModelRuntime(Widths("widths", Path("."), config), Metrics(CollectorRegistry()), pool)

        async def threads_of(items: list[dict[str, Any]]) -> list[str]:
            decoded_on.clear()
            await runtime.validate(items, {})
            return list(decoded_on)

        async def check() -> None:
            loop_thread = threading.current_thread().name
            assert await threads_of([{"image": small}]) == [loop_thread]
            assert (await threads_of([{"image": large}]))[0].startswith("pool")
            # the budget is the request's: 64 cheap tiles are not all decoded on the loop
            tiles = await threads_of([{"image": tile}] * 64)
            on_loop = tiles.count(loop_thread)
            assert on_loop == int(budget // estimated_decode_seconds(tile)), (on_loop, estimated_decode_seconds(tile))
            assert 0 < on_loop < 64 and len(tiles) == 64
            assert all(name.startswith("pool") for name in tiles if name != loop_thread)
            with pytest.raises(InvalidImage, match="truncated"):
                await threads_of([{"image": small[: len(small) // 2]}])
            assert decoded_on == [loop_thread]

        asyncio.run(check())
