"""The worker in-process against a real Redis: a tiny predictor served by the real runtime, KServe adapter and
data plane (the whole synchronous path); what the server adds around it is tested in tests/integration."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kserve.model_repository import ModelRepository
from prometheus_client import CollectorRegistry

from devtools.redis_server import RedisServer
from predictors.dataplane.dataplane import PredictorDataPlane
from predictors.dataplane.image_urls import ImageFetcher
from predictors.dataplane.kserve_model import KServeModel
from predictors.errors import ImageURLRefused, ServiceBusy
from predictors.jobs.execute import JobExecutor
from predictors.jobs.service import JobService
from predictors.jobs.store import Claim, JobStore, connect
from predictors.jobs.worker import OWN_ROOM_WAIT_SECONDS, JobWorker
from predictors.models.base import ModelConfig
from predictors.runtime import ModelRuntime
from predictors.settings import BatchingConfig, Settings
from predictors.telemetry.metrics import Metrics
from tests.support.image_server import image_server
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


@contextlib.asynccontextmanager
async def serving(redis_server: RedisServer, runtime: ModelRuntime[int, int], store: JobStore,
                  **settings: Any) -> AsyncIterator[tuple[JobService, JobWorker]]:
    """The job service and worker over the real data plane and KServe adapter (`settings` added to the test's)."""
    config = Settings(jobs_redis_url=redis_server.url, jobs_consumer_name="unit", jobs_visibility_timeout_seconds=3,
                      shutdown_grace_seconds=5, **settings)
    repository = ModelRepository()
    repository.update(KServeModel(runtime, ImageFetcher(config)))
    dataplane = PredictorDataPlane(model_registry=repository)
    service = JobService(config, store, dataplane, runtime.metrics)
    worker = JobWorker(config, JobStore(connect(redis_server.url, socket_timeout=6)), JobExecutor(dataplane),
                       {MODEL: runtime}, runtime.metrics)
    try:
        yield service, worker
    finally:
        await worker.drain()
        await worker.store.aclose()


@pytest.fixture()
async def served(redis_server: RedisServer, runtime: ModelRuntime[int, int],
                 store: JobStore) -> AsyncIterator[tuple[JobService, JobWorker]]:
    async with serving(redis_server, runtime, store) as pair:
        yield pair


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


async def test_a_job_fetches_its_image_urls_when_submitted_and_again_when_it_runs(
        redis_server: RedisServer, runtime: ModelRuntime[int, int], store: JobStore) -> None:
    with image_server() as images:
        allowed = {"image_url_allow": (f"{images.base}/",), "image_url_allow_http": True,
                   "image_url_allow_networks": ("127.0.0.1/32",)}
        async with serving(redis_server, runtime, store, **allowed) as (service, worker):
            body = json.dumps({"instances": [{"image": {"url": f"{images.base}/image.png"}}]}).encode()
            accepted = json.loads((await service.submit(MODEL, "v1", body, {"content-type": "application/json"})).body)
            assert images.paths == ["/image.png"]  # fetched and checked at submission
            worker.start()
            done = await finished(service, accepted["id"])
            assert done["result"]["predictions"][0]["width"] == 32  # the 32 px image the URL serves, fetched again
            assert images.paths == ["/image.png", "/image.png"]  # and again when it ran
            refused = json.dumps({"instances": [{"image": {"url": "http://169.254.169.254/latest/"}}]}).encode()
            with pytest.raises(ImageURLRefused):  # a 4xx at once: never queued
                await service.submit(MODEL, "v1", refused, {"content-type": "application/json"})


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
