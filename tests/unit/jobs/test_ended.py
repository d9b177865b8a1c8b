"""Long polls against a real Redis: the scripts that end a job publish it, the registry wakes the polls of that
job only, a poll answers at its deadline or at shutdown, nothing stays registered after an answer, and a lost
subscription is made again."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from kserve.model_repository import ModelRepository
from prometheus_client import CollectorRegistry

from devtools.procs import free_port
from devtools.redis_server import RedisServer
from predictors.dataplane.dataplane import PredictorDataPlane
from predictors.errors import InvalidInput, JobNotFound, JobsUnavailable
from predictors.jobs import service as service_module
from predictors.jobs.ended import REREAD_SECONDS, JobEndings
from predictors.jobs.service import JobService, wait_seconds
from predictors.jobs.store import Claim, JobStore, Outcome, connect
from predictors.settings import Settings
from predictors.telemetry.metrics import Metrics
from tests.unit.jobs.test_store import EXHAUSTED, MODEL, TTL, status, submit, take


def endings_for(url: str) -> JobEndings:
    return JobEndings(lambda: connect(url))


@pytest.fixture()
async def endings(redis_server: RedisServer) -> AsyncIterator[JobEndings]:
    registry = endings_for(redis_server.url)
    yield registry
    await registry.aclose()


@pytest.fixture()
def service(store: JobStore, endings: JobEndings) -> JobService:
    dataplane = PredictorDataPlane(model_registry=ModelRepository())  # the long poll never needs a model
    return JobService(Settings(), store, dataplane, Metrics(CollectorRegistry()), endings)


async def is_set(event: asyncio.Event, timeout: float = 5.0) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        return False
    return True


async def held(service: JobService, job_id: str, wait: float) -> tuple[dict, float]:
    """The long poll's document and how long it took."""
    started = time.monotonic()
    document = json.loads(await service.get(job_id, wait))
    return dict(document), time.monotonic() - started


# ---- the registry and the scripts' messages ----------------------------------------------------------------


async def test_an_ended_job_wakes_its_waiters_only(store: JobStore, endings: JobEndings) -> None:
    finished, cancelled, other = await submit(store), await submit(store), await submit(store)
    with endings.waiter(finished) as first, endings.waiter(finished) as second, \
            endings.waiter(cancelled) as third, endings.waiter(other) as fourth:
        assert endings.waiting() == 4
        assert await endings.subscribed(5.0)
        claim = await take(store)
        assert claim.entry.job_id == finished
        assert await store.finish(claim, "pod-a", result=b"1", ttl_seconds=TTL)
        assert await is_set(first) and await is_set(second)
        assert not third.is_set() and not fourth.is_set()
        assert await store.cancel(cancelled)
        assert await is_set(third)
        assert not fourth.is_set()
        assert not await store.cancel(finished)  # had ended already: nothing published, nothing woken
        await asyncio.sleep(0.2)
        assert not fourth.is_set()
    assert endings.waiting() == 0 and endings._waiters == {}  # nothing left behind


async def test_a_job_that_used_its_runs_wakes_its_waiters(store: JobStore, endings: JobEndings) -> None:
    job_id = await submit(store)
    with endings.waiter(job_id) as ended:
        assert await endings.subscribed(5.0)
        await take(store, "pod-a", max_attempts=1)
        _, entries = await store.reclaim(MODEL, "pod-b", min_idle_ms=0, count=10, cursor="0-0")
        assert await store.start(MODEL, entries[0], "pod-b", max_attempts=1, ttl_seconds=TTL,
                                 exhausted_error=EXHAUSTED) == "exhausted"
        assert await is_set(ended)


async def test_a_requeued_run_wakes_nobody(store: JobStore, endings: JobEndings) -> None:
    job_id = await submit(store)
    with endings.waiter(job_id) as ended:
        assert await endings.subscribed(5.0)
        claim = await take(store)
        assert isinstance(claim, Claim) and await store.requeue(claim, None, count_attempt=False)
        assert not await is_set(ended, 0.3)


async def test_release_wakes_every_waiter_and_new_ones_do_not_wait(store: JobStore, endings: JobEndings) -> None:
    ids = [await submit(store) for _ in range(3)]
    with endings.waiter(ids[0]) as first, endings.waiter(ids[1]) as second:
        assert await endings.subscribed(5.0)
        endings.release()
        assert await is_set(first, 1.0) and await is_set(second, 1.0)
        with endings.waiter(ids[2]) as late:
            assert late.is_set()
            assert not await endings.subscribed(5.0)
    assert endings.waiting() == 0


async def test_a_lost_subscription_is_made_again_and_wakes_the_held_waiters(
        store: JobStore, endings: JobEndings) -> None:
    job_id = await submit(store)
    with endings.waiter(job_id) as ended:
        assert await endings.subscribed(5.0)
        assert await store.redis.client_kill_filter(_type="pubsub") == 1
        # ends published while it was down went unheard: the listener wakes everyone once it is back
        assert await is_set(ended, 10.0)
        deadline = time.monotonic() + 10
        while not await endings.subscribed(1.0):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        ended.clear()
        assert await store.cancel(job_id)
        assert await is_set(ended)


async def test_without_redis_no_subscription_is_made(redis_server: RedisServer) -> None:
    registry = endings_for(f"redis://127.0.0.1:{free_port()}/0")
    try:
        started = time.monotonic()
        assert not await registry.subscribed(5.0)
        assert time.monotonic() - started < 3.0
        assert not await registry.subscribed(5.0)  # answered at once while Redis is away
    finally:
        await registry.aclose()


# ---- the long poll (`JobService.get` with a wait) --------------------------------------------------------------


async def test_a_long_poll_answers_as_soon_as_the_job_ends(store: JobStore, service: JobService) -> None:
    job_id = await submit(store)

    async def finish_later() -> None:
        await asyncio.sleep(0.5)
        assert await store.finish(await take(store), "pod-a", result=b'{"outputs": []}', ttl_seconds=TTL)

    (document, took), _ = await asyncio.gather(held(service, job_id, 20.0), finish_later())
    assert document["status"] == "succeeded" and document["result"] == {"outputs": []}
    assert 0.5 <= took < 0.5 + REREAD_SECONDS  # woken by the message, not by a re-read
    assert service.endings is not None and service.endings.waiting() == 0


async def test_a_long_poll_answers_at_its_deadline_with_the_job_as_it_is(store: JobStore,
                                                                        service: JobService) -> None:
    job_id = await submit(store)
    document, took = await held(service, job_id, 0.6)
    assert document["status"] == "queued"
    assert 0.6 <= took < 2.0
    document, took = await held(service, job_id, 0)  # 0: at once
    assert document["status"] == "queued" and took < 0.5
    assert service.endings is not None and service.endings.waiting() == 0


async def test_a_long_poll_on_a_final_job_answers_at_once(store: JobStore, service: JobService) -> None:
    job_id = await submit(store)
    assert await store.cancel(job_id)
    document, took = await held(service, job_id, 20.0)
    assert document["status"] == "cancelled" and took < 1.0


async def test_a_job_that_expires_while_polled_is_not_found(store: JobStore, service: JobService) -> None:
    job_id = await submit(store, ttl=1)
    started = time.monotonic()
    with pytest.raises(JobNotFound):
        await service.get(job_id, 20.0)
    assert time.monotonic() - started < 1 + REREAD_SECONDS + 1.5  # noticed by a re-read
    assert service.endings is not None and service.endings.waiting() == 0


async def test_a_release_answers_a_held_poll_at_once(store: JobStore, service: JobService) -> None:
    job_id = await submit(store)
    assert service.endings is not None
    endings = service.endings

    async def release_later() -> None:
        await asyncio.sleep(0.5)
        assert endings.waiting() == 1
        endings.release()

    (document, took), _ = await asyncio.gather(held(service, job_id, 20.0), release_later())
    assert document["status"] == "queued" and 0.5 <= took < 1.5
    assert endings.waiting() == 0


async def test_a_long_poll_without_redis_is_unavailable_at_once(redis_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    registry = endings_for(url)
    store = JobStore(connect(url))
    service = JobService(Settings(), store, PredictorDataPlane(model_registry=ModelRepository()),
                         Metrics(CollectorRegistry()), registry)
    try:
        started = time.monotonic()
        with pytest.raises(JobsUnavailable):
            await service.get("0" * 32, 20.0)
        assert time.monotonic() - started < 4.0
        assert registry.waiting() == 0
    finally:
        await registry.aclose()
        await store.aclose()


async def test_a_long_poll_is_held_at_most_the_cap(store: JobStore, service: JobService,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "MAX_WAIT_SECONDS", 0.4)
    document, took = await held(service, await submit(store), 100.0)
    assert document["status"] == "queued" and 0.4 <= took < 2.0


@pytest.mark.parametrize("raw", ["abc", "-1", "-0.5", "nan", "inf", "-inf", "", "1e999", "0x10"])
def test_a_wait_that_is_not_a_finite_number_of_seconds_is_invalid(raw: str) -> None:
    with pytest.raises(InvalidInput, match="wait must be a number of seconds"):
        wait_seconds(raw)


def test_wait_values() -> None:
    assert [wait_seconds(raw) for raw in (None, "0", "2.5", "100")] == [0.0, 0.0, 2.5, 100.0]


async def test_a_redis_user_without_the_channel_still_ends_its_jobs(redis_server: RedisServer, store: JobStore) -> None:
    """ACL: a user may be refused the channel (Redis 7 gives new users no channel); the scripts' PUBLISH is
    then refused, never the job's end."""
    user = "no-channels"
    await store.redis.acl_setuser(user, enabled=True, passwords=["+secret"], keys=["predictors:*"],
                                  commands=["+@all"], reset_channels=True)
    url = redis_server.url.replace("redis://", f"redis://{user}:secret@")
    limited, endings = JobStore(connect(url)), endings_for(url)
    try:
        finished, cancelled = await submit(limited), await submit(limited)
        assert await limited.finish(await take(limited), "pod-a", result=b"1", ttl_seconds=TTL)
        assert await limited.cancel(cancelled)
        assert [await status(limited, job_id) for job_id in (finished, cancelled)] == ["succeeded", "cancelled"]
        started = time.monotonic()
        assert not await endings.subscribed(5.0)  # refused: its long polls answer at once, as plain GETs
        assert time.monotonic() - started < 2.0
    finally:
        await limited.aclose()
        await endings.aclose()
        await store.redis.acl_deluser(user)


async def test_runs_finished_together_wake_each_of_their_jobs_waiters(store: JobStore, endings: JobEndings) -> None:
    job_ids = [await submit(store) for _ in range(3)]
    await store.ensure_group(MODEL)
    entries = await store.read(MODEL, "pod-a", count=3, block_ms=10)
    started = await store.start_many(MODEL, entries, "pod-a", max_attempts=3, ttl_seconds=TTL,
                                     exhausted_error=EXHAUSTED)
    claims = [claim for claim in started if isinstance(claim, Claim)]
    with endings.waiter(job_ids[0]) as first, endings.waiter(job_ids[1]) as second, \
            endings.waiter(job_ids[2]) as third:
        assert await endings.subscribed(5.0)
        assert await store.finish_many([Outcome(claim, b"1") for claim in claims[:2]], "pod-a",
                                       ttl_seconds=TTL) == [True, True]
        assert await is_set(first) and await is_set(second)
        assert not await is_set(third, 0.3)  # still running
