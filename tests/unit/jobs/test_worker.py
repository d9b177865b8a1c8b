"""The worker in-process against a real Redis: a tiny predictor served by the real runtime, KServe adapter and
data plane (the whole synchronous path); what the server adds around it is tested in tests/integration."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kserve.model_repository import ModelRepository
from prometheus_client import CollectorRegistry

from bench.redis_server import RedisServer
from predictors.batching import BatchingConfig
from predictors.errors import ServiceBusy
from predictors.jobs.execute import JobExecutor
from predictors.jobs.service import JobService
from predictors.jobs.store import Claim, JobStore, connect
from predictors.jobs.worker import OWN_ROOM_WAIT_SECONDS, JobWorker
from predictors.models.base import ModelConfig
from predictors.runtime import ModelRuntime
from predictors.server.dataplane import PredictorDataPlane
from predictors.server.kserve_model import KServeModel
from predictors.settings import Settings
from predictors.telemetry.metrics import Metrics
from tests.unit.test_runtime import Widths, png

MODEL = "widths"


@pytest.fixture()
def runtime() -> Iterator[ModelRuntime[int, int]]:
    pool = ThreadPoolExecutor(2)
    config = ModelConfig(device="cpu", batching=BatchingConfig(max_batch_size=2, max_latency_ms=5))
    model = ModelRuntime(Widths(MODEL, Path("."), config), Metrics(CollectorRegistry()), pool)
    model.load()
    yield model
    model._runner.shutdown()  # type: ignore[union-attr]
    pool.shutdown()


@pytest.fixture()
async def served(redis_server: RedisServer, runtime: ModelRuntime[int, int],
                 store: JobStore) -> AsyncIterator[tuple[JobService, JobWorker]]:
    settings = Settings(jobs_redis_url=redis_server.url, jobs_consumer_name="unit", jobs_visibility_timeout_seconds=3,
                        shutdown_grace_seconds=5)
    repository = ModelRepository()
    repository.update(KServeModel(runtime))
    dataplane = PredictorDataPlane(model_registry=repository)
    service = JobService(settings, store, dataplane, runtime.metrics)
    worker = JobWorker(settings, JobStore(connect(redis_server.url, socket_timeout=6)), JobExecutor(dataplane),
                       {MODEL: runtime}, runtime.metrics)
    yield service, worker
    await worker.drain()
    await worker.store.aclose()


def v1(width: int) -> bytes:
    return json.dumps({"instances": [{"image": {"b64": base64.b64encode(png(width)).decode()}}]}).encode()


async def finished(service: JobService, job_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        document = json.loads(await service.get(job_id))
        if document["status"] in ("succeeded", "failed", "cancelled"):
            return dict(document)
        assert time.monotonic() < deadline, document
        await asyncio.sleep(0.02)


async def test_a_job_runs_through_the_synchronous_path(served: tuple[JobService, JobWorker]) -> None:
    service, worker = served
    accepted = json.loads((await service.submit(MODEL, "v1", v1(5), {"content-type": "application/json"})).body)
    worker.start()
    done = await finished(service, accepted["id"])
    assert done["result"] == {"predictions": [{"width": 5, "flagged": True, "scores": [0.5, 0.5], "quality": 0.5,
                                               "faces": 5}]}
    assert done["attempts"] == 1


async def test_a_refused_job_waits_without_using_a_run(served: tuple[JobService, JobWorker],
                                                       store: JobStore) -> None:
    """The batcher refused it (busy): queued again, not counted, and the model's consumer pauses for the
    Retry-After (bounded) instead of taking it back at once."""
    service, worker = served
    job_id = json.loads((await service.submit(MODEL, "v1", v1(6), {})).body)["id"]
    await store.ensure_group(MODEL)
    (entry,) = await store.read(MODEL, "unit", count=1, block_ms=10)
    claim = await store.start(MODEL, entry, "unit", max_attempts=3, ttl_seconds=60, exhausted_error={})
    assert isinstance(claim, Claim) and claim.attempts == 1
    await worker._settle(claim, None, ServiceBusy("busy", retry_after_seconds=1))
    assert json.loads(await service.get(job_id))["status"] == "queued"
    started = time.monotonic()
    worker.start()
    done = await finished(service, job_id)
    assert done["status"] == "succeeded" and done["attempts"] == 1  # the refused run did not count
    assert time.monotonic() - started >= 0.8  # it waited out the pause


async def test_a_consumer_whose_jobs_fill_its_room_takes_more_as_soon_as_one_ends(
        served: tuple[JobService, JobWorker]) -> None:
    """Its own jobs ending is signalled: refilling does not wait for the loop's look-again time (1 s), so 30
    jobs through a room of 6 (3 x max_batch_size 2) take five refills, far less than 5 x 1 s."""
    service, worker = served
    ids = [json.loads((await service.submit(MODEL, "v1", v1(4 + index % 3), {})).body)["id"] for index in range(30)]
    assert OWN_ROOM_WAIT_SECONDS == 1.0
    started = time.monotonic()
    worker.start()
    documents = [await finished(service, job_id) for job_id in ids]
    elapsed = time.monotonic() - started
    assert {document["status"] for document in documents} == {"succeeded"}
    assert elapsed < 2.5, f"30 jobs took {elapsed:.2f} s: the loop waited for its look-again time between refills"
