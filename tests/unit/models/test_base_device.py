"""The runtime's device plumbing through its real hooks (the KServe adapter's), with `meta` standing in
for a GPU.

`ModelConfig(device="meta")` gives the model a primary device that is not the CPU, so the runner's
device thread, the warm-up sizes of an accelerator and the CPU fallback thread are the real ones; the
predictor's forward raises CUDA's out-of-memory error for pictures too wide for its pretend GPU.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from prometheus_client import CollectorRegistry

from predictors.codecs.types import OutputSpec
from predictors.dataplane.kserve_model import KServeModel
from predictors.errors import RequestTimeout
from predictors.kserve_compat import metric_value
from predictors.models.base import ModelConfig, Predictor
from predictors.runtime import ModelRuntime
from predictors.settings import BatchingConfig
from predictors.telemetry.metrics import Metrics

#: widest picture the pretend GPU can take
GPU_LIMIT = 100


class PretendGpu(Predictor[int, int]):
    predictor_name = "pretend-gpu"
    outputs = (OutputSpec("width", "INT64"),)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.forwards: list[tuple[str, str, int]] = []  # (device, thread, batch size)
        self.release_cpu = threading.Event()
        self.release_cpu.set()

    def load_weights(self, device: torch.device) -> None:
        pass

    def prepare(self, item: Any, params: Any) -> int:
        return int(item["image"].width)

    def forward(self, batch: Sequence[int], device: torch.device) -> list[int]:
        self.forwards.append((device.type, threading.current_thread().name, len(batch)))
        if device.type == "cpu":
            assert self.release_cpu.wait(10)
        elif max(batch) > GPU_LIMIT:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return list(batch)

    def finish(self, prepared: int, raw: int, params: Any) -> dict[str, Any]:
        return {"width": raw}

    def warmup_item(self) -> dict[str, Any]:
        return {"image": Image.new("RGB", (4, 4))}


def request(width: int, timeout_ms: int | None = None) -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.new("RGB", (width, 2)).save(buffer, "PNG")
    body: dict[str, Any] = {"instances": [{"image": {"b64": base64.b64encode(buffer.getvalue()).decode()}}]}
    if timeout_ms is not None:
        body["parameters"] = {"timeout_ms": timeout_ms}
    return body


async def infer(model: KServeModel, body: dict[str, Any]) -> Any:
    pending = await model.preprocess(body)
    return await model.postprocess(await model.predict(pending))


@pytest.fixture
def served() -> Iterator[KServeModel]:
    pool = ThreadPoolExecutor(2)
    config = ModelConfig(device="meta", batching=BatchingConfig(max_batch_size=8, max_latency_ms=1))
    runtime = ModelRuntime(PretendGpu("pretend-gpu", Path("."), config), Metrics(CollectorRegistry()), pool)
    runtime.load()
    yield KServeModel(runtime)
    runtime.predictor.release_cpu.set()
    runtime._runner.shutdown()  # type: ignore[union-attr]
    pool.shutdown()


@pytest.fixture
def model(served: KServeModel) -> PretendGpu:
    return served.runtime.predictor  # type: ignore[return-value]


def test_warm_up_covers_every_batch_size_on_the_device_thread(served: KServeModel, model: PretendGpu) -> None:
    assert [size for _, _, size in model.forwards] == [1, 2, 4, 8]
    assert all(device == "meta" and thread.startswith("torch-meta") for device, thread, _ in model.forwards)
    assert served.ready


def test_a_fallback_item_is_answered_while_other_requests_flow(served: KServeModel, model: PretendGpu) -> None:
    async def scenario() -> tuple[Any, Any, bool]:
        model.release_cpu.clear()
        wide = asyncio.create_task(infer(served, request(GPU_LIMIT + 50)))
        while not any(device == "cpu" for device, _, _ in model.forwards):
            await asyncio.sleep(0.01)
        narrow = await asyncio.wait_for(infer(served, request(10)), timeout=10)  # while the CPU is held
        wide_done_before_release = wide.done()
        model.release_cpu.set()
        return await asyncio.wait_for(wide, timeout=10), narrow, wide_done_before_release

    wide, narrow, wide_done_early = asyncio.run(scenario())
    assert narrow == {"predictions": [{"width": 10}]} and not wide_done_early
    assert wide == {"predictions": [{"width": GPU_LIMIT + 50}]}
    fallbacks = [thread for device, thread, _ in model.forwards if device == "cpu"]
    assert len(fallbacks) == 1 and fallbacks[0].startswith("torch-fallback-cpu")
    assert metric_value(served.runtime.metrics.oom_fallbacks.labels("pretend-gpu", "cpu_fallback")) == 1


def test_a_fallback_that_outlives_the_deadline_times_out(served: KServeModel, model: PretendGpu) -> None:
    model.release_cpu.clear()
    with pytest.raises(RequestTimeout):
        asyncio.run(infer(served, request(GPU_LIMIT + 1, timeout_ms=300)))
