"""The job store against a real Redis: every state change, idempotency, the exactly-once result, attempts,
the backlog bound and expiry."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from redis.exceptions import ResponseError

from predictors.errors import ServiceBusy
from predictors.jobs import scripts
from predictors.jobs.store import (
    GROUP,
    Claim,
    JobStore,
    Outcome,
    StoredRequest,
    idempotency_key,
    job_key,
    stream_key,
)

MODEL = "general-recognition"
REQUEST = StoredRequest("v2", b'{"inputs": []}', "application/json", "", "req-1",
                        {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
EXHAUSTED = {"error": "its process stopped every time", "code": "INTERNAL_ERROR"}
TTL = 3600


async def submit(store: JobStore, model: str = MODEL, *, key: str | None = None, backlog: int = 100,
                 ttl: int = TTL) -> str:
    return (await store.submit(model, REQUEST, ttl_seconds=ttl, max_backlog=backlog, idempotency=key)).job_id


async def take(store: JobStore, consumer: str = "pod-a", *, max_attempts: int = 3, model: str = MODEL) -> Claim:
    await store.ensure_group(model)
    entries = await store.read(model, consumer, count=1, block_ms=10)
    assert len(entries) == 1, entries
    claim = await store.start(model, entries[0], consumer, max_attempts=max_attempts, ttl_seconds=TTL,
                              exhausted_error=EXHAUSTED)
    assert isinstance(claim, Claim)
    return claim


async def status(store: JobStore, job_id: str) -> str:
    view = await store.get(job_id)
    assert view is not None
    return view.status


async def test_submit_queues_one_entry_and_a_hash_with_the_request(store: JobStore) -> None:
    job_id = await submit(store)
    view = await store.get(job_id)
    assert view is not None
    assert view.fields["status"] == "queued" and view.fields["model"] == MODEL
    assert view.fields["attempts"] == 0 and view.fields["started_at"] is None
    assert view.fields["created_at"].endswith("Z")
    assert await store.backlog(MODEL) == 1
    stored = await store.redis.hgetall(job_key(job_id))
    assert stored[b"body"] == REQUEST.body and stored[b"traceparent"] == REQUEST.trace["traceparent"].encode()
    assert 0 < await store.redis.ttl(job_key(job_id)) <= TTL


async def test_the_oldest_unfinished_job_age_comes_from_its_stream_entry(store: JobStore) -> None:
    assert await store.oldest_age_seconds(MODEL) == 0.0  # no stream yet
    first = await submit(store)
    await asyncio.sleep(0.3)
    await submit(store)
    age = await store.oldest_age_seconds(MODEL)
    assert 0.25 <= age < 30  # the first job's, not the second's
    claim = await take(store)
    assert claim.entry.job_id == first
    await store.finish(claim, "pod-a", result=b"{}", ttl_seconds=TTL)
    assert await store.oldest_age_seconds(MODEL) < age  # now the second's


async def test_a_run_from_start_to_result(store: JobStore) -> None:
    job_id = await submit(store)
    claim = await take(store)
    assert claim.entry.job_id == job_id and claim.attempts == 1 and claim.request == REQUEST
    assert await status(store, job_id) == "running"
    assert await store.finish(claim, "pod-a", result=b'{"outputs": [1]}', ttl_seconds=TTL)
    view = await store.get(job_id)
    assert view is not None and view.status == "succeeded" and view.fields["finished_at"]
    assert json.loads(view.to_json())["result"] == {"outputs": [1]}
    # acknowledged and dropped: no backlog, nothing pending, the request body is gone
    assert await store.backlog(MODEL) == 0
    assert (await store.redis.xpending(stream_key(MODEL), GROUP))["pending"] == 0
    assert not await store.redis.hexists(job_key(job_id), "body")
    # the consumer group's lag stays computable for KEDA's redis-streams trigger
    groups = await store.redis.xinfo_groups(stream_key(MODEL))
    assert groups[0]["lag"] == 0


async def test_the_first_outcome_wins_when_two_processes_ran_the_job(store: JobStore) -> None:
    job_id = await submit(store)
    first = await take(store, "pod-a")
    # pod-a went silent: pod-b reclaims the entry and runs the job again
    cursor, entries = await store.reclaim(MODEL, "pod-b", min_idle_ms=0, count=10, cursor="0-0")
    assert [entry.job_id for entry in entries] == [job_id]
    second = await store.start(MODEL, entries[0], "pod-b", max_attempts=3, ttl_seconds=TTL,
                               exhausted_error=EXHAUSTED)
    assert isinstance(second, Claim) and second.attempts == 2
    assert await store.finish(second, "pod-b", result=b'"b"', ttl_seconds=TTL)
    assert not await store.finish(first, "pod-a", result=b'"a"', ttl_seconds=TTL)
    assert not await store.finish(first, "pod-a", error={"error": "x", "code": "INTERNAL_ERROR"}, ttl_seconds=TTL)
    view = await store.get(job_id)
    assert view is not None and view.outcome == b'"b"' and view.fields["attempts"] == 2
    assert (await store.redis.hget(job_key(job_id), "finished_by")) == b"pod-b"


async def test_idempotency_key_gives_the_same_job(store: JobStore) -> None:
    first = await store.submit(MODEL, REQUEST, ttl_seconds=TTL, max_backlog=10, idempotency="order-7")
    again = await store.submit(MODEL, REQUEST, ttl_seconds=TTL, max_backlog=10, idempotency="order-7")
    other_model = await store.submit("face-enhancement", REQUEST, ttl_seconds=TTL, max_backlog=10,
                                     idempotency="order-7")
    assert first.created_at and not again.created_at and again.job_id == first.job_id
    assert other_model.created_at and other_model.job_id != first.job_id
    assert await store.backlog(MODEL) == 1
    assert await store.redis.get(idempotency_key(MODEL, "order-7")) == first.job_id.encode()


async def test_the_backlog_bound_refuses_with_retry_after(store: JobStore) -> None:
    await submit(store, backlog=2)
    await submit(store, backlog=2)
    with pytest.raises(ServiceBusy) as refused:
        await submit(store, backlog=2)
    assert refused.value.headers["Retry-After"]
    assert await store.backlog(MODEL) == 2
    # a finished job leaves the backlog: there is room again
    claim = await take(store)
    await store.finish(claim, "pod-a", result=b"1", ttl_seconds=TTL)
    await submit(store, backlog=2)


async def test_a_cancelled_queued_job_is_skipped_and_dropped(store: JobStore) -> None:
    job_id = await submit(store)
    assert await store.cancel(job_id) is True
    assert await store.cancel(job_id) is False  # once
    await store.ensure_group(MODEL)
    entries = await store.read(MODEL, "pod-a", count=10, block_ms=10)
    assert await store.start(MODEL, entries[0], "pod-a", max_attempts=3, ttl_seconds=TTL,
                             exhausted_error=EXHAUSTED) == "skipped"
    assert await store.backlog(MODEL) == 0
    view = await store.get(job_id)
    assert view is not None and view.status == "cancelled" and view.fields["attempts"] == 0
    assert await store.cancel("0" * 32) is None


async def test_a_cancelled_running_job_discards_its_result(store: JobStore) -> None:
    job_id = await submit(store)
    claim = await take(store)
    assert await store.cancel(job_id) is True
    assert not await store.finish(claim, "pod-a", result=b'"late"', ttl_seconds=TTL)
    view = await store.get(job_id)
    assert view is not None and view.status == "cancelled" and view.outcome is None
    assert await store.backlog(MODEL) == 0
    # a finished job cannot be cancelled any more
    done = await submit(store)
    await store.finish(await take(store), "pod-a", result=b"1", ttl_seconds=TTL)
    assert await store.cancel(done) is False
    assert await status(store, done) == "succeeded"


async def test_requeue_counts_attempts_or_not(store: JobStore) -> None:
    job_id = await submit(store)
    claim = await take(store)
    assert await store.requeue(claim, {"error": "boom", "code": "INTERNAL_ERROR"}, count_attempt=True)
    assert await status(store, job_id) == "queued"
    assert not await store.requeue(claim, None, count_attempt=True)  # that entry is gone: nothing twice
    again = await take(store)
    assert again.attempts == 2 and again.entry.entry_id != claim.entry.entry_id
    assert await store.requeue(again, None, count_attempt=False)  # not the job's fault (busy)
    third = await take(store)
    assert third.attempts == 2
    assert await store.backlog(MODEL) == 1


async def test_a_job_whose_processes_keep_dying_ends_failed_with_its_last_error(store: JobStore) -> None:
    job_id = await submit(store)
    await take(store, "pod-a", max_attempts=2)
    _, entries = await store.reclaim(MODEL, "pod-b", min_idle_ms=0, count=10, cursor="0-0")
    second = await store.start(MODEL, entries[0], "pod-b", max_attempts=2, ttl_seconds=TTL,
                               exhausted_error=EXHAUSTED)
    assert isinstance(second, Claim) and second.attempts == 2
    _, entries = await store.reclaim(MODEL, "pod-c", min_idle_ms=0, count=10, cursor="0-0")
    assert await store.start(MODEL, entries[0], "pod-c", max_attempts=2, ttl_seconds=TTL,
                             exhausted_error=EXHAUSTED) == "exhausted"
    view = await store.get(job_id)
    assert view is not None and view.status == "failed" and view.fields["attempts"] == 2
    assert orjson.loads(view.outcome or b"") == EXHAUSTED
    assert await store.backlog(MODEL) == 0


async def test_heartbeats_keep_a_running_entry_from_being_reclaimed(store: JobStore) -> None:
    await submit(store)
    claim = await take(store, "pod-a")
    await asyncio.sleep(0.3)
    await store.heartbeat(MODEL, "pod-a", [claim.entry.entry_id])
    _, entries = await store.reclaim(MODEL, "pod-b", min_idle_ms=200, count=10, cursor="0-0")
    assert entries == []
    await asyncio.sleep(0.3)
    _, entries = await store.reclaim(MODEL, "pod-b", min_idle_ms=200, count=10, cursor="0-0")
    assert [entry.entry_id for entry in entries] == [claim.entry.entry_id]


async def test_jobs_and_their_keys_expire(store: JobStore) -> None:
    finished = await submit(store, key="k1", ttl=1)
    claim = await take(store)
    await store.finish(claim, "pod-a", result=b"1", ttl_seconds=1)
    queued = await submit(store, ttl=1)
    await asyncio.sleep(1.3)
    assert await store.get(finished) is None and await store.get(queued) is None
    assert not await store.redis.exists(idempotency_key(MODEL, "k1"))
    # the expired queued job's entry is skipped and dropped, never run
    entries = await store.read(MODEL, "pod-a", count=10, block_ms=10)
    assert [entry.job_id for entry in entries] == [queued]
    assert await store.start(MODEL, entries[0], "pod-a", max_attempts=3, ttl_seconds=1,
                             exhausted_error=EXHAUSTED) == "skipped"
    assert await store.backlog(MODEL) == 0
    # the same key makes a new job once the old one expired
    assert await submit(store, key="k1") != finished


async def test_a_clean_consumer_leaves_the_group(store: JobStore) -> None:
    await submit(store)
    claim = await take(store, "pod-a")
    assert not await store.forget_consumer(MODEL, "pod-a")  # it holds an entry: keep it for a reclaim
    await store.finish(claim, "pod-a", result=b"1", ttl_seconds=TTL)
    assert await store.forget_consumer(MODEL, "pod-a")
    assert await store.redis.xinfo_consumers(stream_key(MODEL), GROUP) == []


async def test_a_lost_group_is_made_again(store: JobStore) -> None:
    for lost_group_call in (lambda: store.reclaim(MODEL, "pod-a", 0, 10, "0-0"),
                            lambda: store.read(MODEL, "pod-a", count=1, block_ms=10)):
        await store.ensure_group(MODEL)
        await store.redis.delete(stream_key(MODEL))
        assert await lost_group_call() in ([], ("0-0", []))
        assert await store.redis.xinfo_groups(stream_key(MODEL))  # made again
    await submit(store)
    assert len(await store.read(MODEL, "pod-a", count=1, block_ms=10)) == 1


async def test_runs_started_and_finished_together_are_each_what_one_call_gives(store: JobStore) -> None:
    """A batch's starts and finishes go to Redis in one pipeline each: every job gets exactly the answer of
    its own call, including one that had ended already, and no SCRIPT EXISTS trip is added."""
    job_ids = [await submit(store) for _ in range(4)]
    await store.ensure_group(MODEL)
    entries = await store.read(MODEL, "pod-a", count=4, block_ms=10)
    await store.start(MODEL, entries[0], "pod-a", max_attempts=3, ttl_seconds=TTL, exhausted_error=EXHAUSTED)
    for script in (scripts.FINISH, scripts.CANCEL):  # known to Redis, as in a server that has run jobs
        await store.redis.script_load(script)
    script_calls = await _script_command_calls(store)
    started = await store.start_many(MODEL, entries, "pod-a", max_attempts=3, ttl_seconds=TTL,
                                     exhausted_error=EXHAUSTED)
    # the first one was started already: its entry is the job's, so it runs again (a second attempt)
    assert [claim.attempts for claim in started if isinstance(claim, Claim)] == [2, 1, 1, 1]
    assert [claim.entry.job_id for claim in started if isinstance(claim, Claim)] == job_ids
    assert all(claim.request == REQUEST for claim in started if isinstance(claim, Claim))
    claims = [claim for claim in started if isinstance(claim, Claim)]
    await store.cancel(job_ids[1])
    written = await store.finish_many([Outcome(claims[0], b'"r0"'), Outcome(claims[1], b'"r1"'),
                                       Outcome(claims[2], error={"error": "bad", "code": "INVALID_INPUT"}),
                                       Outcome(claims[3], b'"r3"')], "pod-a", ttl_seconds=TTL)
    assert written == [True, False, True, True]
    assert [await status(store, job_id) for job_id in job_ids] == ["succeeded", "cancelled", "failed", "succeeded"]
    view = await store.get(job_ids[3])
    assert view is not None and view.outcome == b'"r3"'
    assert await store.backlog(MODEL) == 0
    assert await _script_command_calls(store) == script_calls


async def test_a_batch_runs_after_redis_forgot_the_scripts(store: JobStore) -> None:
    """NOSCRIPT (Redis restarted, SCRIPT FLUSH): each script of the pipeline is loaded and run on its own."""
    job_ids = [await submit(store) for _ in range(3)]
    await store.ensure_group(MODEL)
    entries = await store.read(MODEL, "pod-a", count=3, block_ms=10)
    await store.redis.script_flush()
    started = await store.start_many(MODEL, entries, "pod-a", max_attempts=3, ttl_seconds=TTL,
                                     exhausted_error=EXHAUSTED)
    assert [claim.entry.job_id for claim in started if isinstance(claim, Claim)] == job_ids
    await store.redis.script_flush()
    claims = [claim for claim in started if isinstance(claim, Claim)]
    assert await store.finish_many([Outcome(claim, b"1") for claim in claims], "pod-a",
                                   ttl_seconds=TTL) == [True, True, True]
    assert {await status(store, job_id) for job_id in job_ids} == {"succeeded"}


async def test_a_script_error_is_its_own_jobs_only(store: JobStore) -> None:
    job_ids = [await submit(store) for _ in range(3)]
    await store.ensure_group(MODEL)
    entries = await store.read(MODEL, "pod-a", count=3, block_ms=10)
    await store.redis.delete(job_key(job_ids[1]))
    await store.redis.set(job_key(job_ids[1]), "not a hash")  # HMGET on it fails inside the script
    started = await store.start_many(MODEL, entries, "pod-a", max_attempts=3, ttl_seconds=TTL,
                                     exhausted_error=EXHAUSTED)
    assert isinstance(started[0], Claim) and isinstance(started[2], Claim)
    assert isinstance(started[1], ResponseError) and "WRONGTYPE" in str(started[1])
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await store.start(MODEL, entries[1], "pod-a", max_attempts=3, ttl_seconds=TTL, exhausted_error=EXHAUSTED)


async def _script_command_calls(store: JobStore) -> int:
    """How many SCRIPT commands (EXISTS, LOAD, ...) Redis has served."""
    stats = await store.redis.info("commandstats")
    return sum(int(value["calls"]) for name, value in stats.items() if name.startswith("cmdstat_script"))
