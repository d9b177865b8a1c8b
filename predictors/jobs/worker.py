"""`JobWorker`: this process's consumers, one loop per served model.

Each loop takes entries of its model's stream for the consumer group ``predictors`` (this process is one
consumer, named after its pod), only as many as the model's batcher has room for: at most
``3 x max_batch_size`` jobs in flight, and none while synchronous requests fill the queue, so synchronous
traffic keeps priority and the queue bound still holds. Entries idle for longer than
``jobs_visibility_timeout_seconds`` (their process died or hung) are taken over with XAUTOCLAIM; the
entries running here are claimed again every third of that time, so a slow but live run is not.

A run goes through the synchronous route's path (`JobExecutor`); its outcome is written (once: the first
outcome of a job wins) and its entry acknowledged in one step. A client error (4xx) ends the job failed
at once; any other error runs it again, up to ``jobs_max_attempts`` runs; a busy or not-ready model
queues it again without counting the run.

Redis unreachable: every loop retries with a growing pause and the outage is logged once; a finished
run's outcome is kept and written when Redis is back (until the visibility timeout, after which its
entry may run elsewhere anyway). SIGTERM (`stop`): no new entries are taken; the running ones get until
the grace period's end, then they are left pending for another process to reclaim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from predictors.dataplane.errors import report_error
from predictors.errors import ModelNotReady, PredictorError, ServiceBusy
from predictors.jobs.coalesce import Coalescing
from predictors.jobs.execute import JobExecutor
from predictors.jobs.store import Claim, Entry, JobStore, Outcome
from predictors.runtime import ModelRuntime
from predictors.settings import Settings
from predictors.telemetry import tracing
from predictors.telemetry.context import current_request_id
from predictors.telemetry.metrics import Metrics
from predictors.telemetry.requests import RequestRecord, current_request

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: longest wait of one XREADGROUP: how fast a loop notices `stop` while its stream is empty
BLOCK_MS = 1000
#: how often a loop whose batcher is full looks again (the batcher does not signal it)
ROOM_POLL_SECONDS = 0.02
#: how long a loop whose own running jobs fill its room waits for one of them to end (which is signalled) before
#: it looks again all the same; also how soon it notices `stop` then
OWN_ROOM_WAIT_SECONDS = 1.0
BACKLOG_REFRESH_SECONDS = 1.0
#: longest pause of a model's consumer after its batcher refused a job (busy, not ready)
REFUSED_PAUSE_MAX = 5.0
#: how long a finished job's outcome waits for those of its batch, to be written with them: a batch's jobs
#: finish within a few milliseconds of each other; a job takes a forward pass, far longer
FINISH_WINDOW_SECONDS = 0.005
#: pauses between retries while Redis is unreachable
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0
#: a job whose processes keep dying has no error of its own
EXHAUSTED_ERROR = {"error": "the job's runs ended without an outcome every time (the process running it "
                            "died or hung): it is not run again", "code": "INTERNAL_ERROR"}


def consumer_name(configured: str | None) -> str:
    """The configured name, else the pod's name (Kubernetes downward API, ``POD_NAME``), else host-pid."""
    return configured or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class _Outage:
    """Logs an unreachable Redis once per outage (and its end), shared by every loop of the process; tells
    `available` whether Redis answered the last call (a metric)."""

    def __init__(self, available: Callable[[bool], None] = lambda up: None) -> None:
        self.since: float | None = None
        self._available = available

    def failed(self, doing: str, error: BaseException) -> float:
        """Note a failure; the pause before the next try, a quarter of the outage so far (bounded): a short
        outage is noticed to end soon, a long one costs few tries."""
        now = time.monotonic()
        self._available(False)
        if self.since is None:
            self.since = now
            logger.warning("jobs: Redis is unavailable (%s: %s: %s); retrying in the background", doing,
                           type(error).__name__, error)
        return min(BACKOFF_MAX, max(BACKOFF_FIRST, (now - self.since) / 4))

    def ok(self) -> None:
        self._available(True)
        if self.since is not None:
            logger.info("jobs: Redis is available again after %.1f s", time.monotonic() - self.since)
            self.since = None


@dataclass(eq=False)
class JobWorker:
    settings: Settings
    store: JobStore
    executor: JobExecutor
    runtimes: Mapping[str, ModelRuntime[Any, Any]]
    metrics: Metrics
    tracing_enabled: Callable[[], bool] = lambda: False

    def __post_init__(self) -> None:
        self.consumer = consumer_name(self.settings.jobs_consumer_name)
        self.visibility_ms = int(self.settings.jobs_visibility_timeout_seconds * 1000)
        self.outage = _Outage(self._redis_available)
        self._stopping = False
        self._deadline: float | None = None
        self._running: dict[str, dict[str, asyncio.Task[None]]] = {name: {} for name in self.runtimes}
        #: a model's consumer takes nothing until then (its batcher refused a job: busy or not ready)
        self._paused_until: dict[str, float] = dict.fromkeys(self.runtimes, 0.0)
        self._finished = asyncio.Event()
        #: the outcomes of a batch's jobs go to Redis together
        self._finishes: Coalescing[Outcome, bool] = Coalescing(
            lambda outcomes: self.store.finish_many(outcomes, self.consumer,
                                                    ttl_seconds=self.settings.jobs_result_ttl_seconds),
            FINISH_WINDOW_SECONDS)
        self._tasks: list[asyncio.Task[None]] = []

    def _redis_available(self, up: bool) -> None:
        for model in self.runtimes:
            self.metrics.jobs_redis_available.labels(model).set(1 if up else 0)

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        logger.info("jobs: consuming the streams of %s as consumer %r", sorted(self.runtimes), self.consumer)
        for name in self.runtimes:
            self.metrics.jobs_expected(name)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume(name), name=f"jobs-{name}") for name in self.runtimes]
        self._tasks.append(loop.create_task(self._heartbeat(), name="jobs-heartbeat"))

    def stop(self, grace_seconds: float) -> None:
        """Take no new entries; the running ones may finish within `grace_seconds`. Signal-safe."""
        if not self._stopping:
            self._stopping = True
            self._deadline = time.monotonic() + grace_seconds

    async def drain(self) -> None:
        """After `stop`: wait for the running jobs until the grace period ends, then leave the rest pending
        (another process reclaims them) and leave the group when nothing is pending here."""
        self.stop(self.settings.shutdown_grace_seconds)
        await asyncio.gather(*self._tasks[:-1], return_exceptions=True)  # the loops end within BLOCK_MS
        running = [task for tasks in self._running.values() for task in tasks.values()]
        if running:
            logger.info("jobs: finishing %d running job(s) before exiting", len(running))
            assert self._deadline is not None
            _, unfinished = await asyncio.wait(running, timeout=max(0.0, self._deadline - time.monotonic()))
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
            if unfinished:
                logger.warning("jobs: %d job(s) left pending for another process to take over (after %d s)",
                               len(unfinished), self.settings.jobs_visibility_timeout_seconds)
        await self._finishes.settled()
        self._tasks[-1].cancel()
        await asyncio.gather(self._tasks[-1], return_exceptions=True)
        for name in self.runtimes:
            try:
                await self.store.forget_consumer(name, self.consumer)
            except RedisError:
                break

    # ---- the loops -------------------------------------------------------------------------------

    async def _consume(self, model: str) -> None:
        runtime = self.runtimes[model]
        running = self._running[model]
        # At most three batches' worth in flight: one on the device, one waiting, one being fetched and prepared
        # while the last one's results are written (with two the device idled between batches: docs/performance.md,
        # "Asynchronous jobs"). The queue keeps the rest of its room for synchronous requests.
        most = 3 * runtime.config.batching.max_batch_size
        cursor, next_reclaim, next_backlog = "0-0", 0.0, 0.0
        grouped = False
        while not self._stopping:
            try:
                if not grouped:
                    await self.store.ensure_group(model)  # at once: the scaler reads the group's lag
                    grouped = True
                if time.monotonic() >= next_backlog:  # also while the batcher is full: then most of all
                    self.metrics.jobs_backlog.labels(model).set(await self.store.backlog(model))
                    self.metrics.jobs_oldest_age.labels(model).set(await self.store.oldest_age_seconds(model))
                    next_backlog = time.monotonic() + BACKLOG_REFRESH_SECONDS
                    self.outage.ok()
                takes = runtime.ready and time.monotonic() >= self._paused_until[model]
                free_slots = runtime.free_slots
                room = min(most, free_slots) - len(running) if takes else 0
                if room <= 0:
                    # Our own jobs fill the room: one of them ending is what frees it, and that is signalled.
                    # Else the batcher's queue is full of synchronous requests, or the consumer is paused:
                    # nothing signals their end, so look again soon.
                    ours = takes and most <= free_slots
                    await self._wait_for_room(OWN_ROOM_WAIT_SECONDS if ours else ROOM_POLL_SECONDS)
                    continue
                entries: list[Entry] = []
                now = time.monotonic()
                if now >= next_reclaim:
                    cursor, entries = await self.store.reclaim(model, self.consumer, self.visibility_ms, room,
                                                               cursor)
                    if entries:
                        self.metrics.jobs_reclaimed.labels(model).inc(len(entries))
                        logger.info("jobs: took over %d job(s) of model %s from a silent process", len(entries),
                                    model)
                    if cursor == "0-0":  # the whole pending list was looked at
                        next_reclaim = now + min(5.0, self.visibility_ms / 2000)
                if not entries:
                    entries = await self.store.read(model, self.consumer, room, BLOCK_MS)
                # (a run of ours reclaimed after a stall runs once here)
                await self._start(model, [entry for entry in entries if entry.entry_id not in running])
                self.outage.ok()
            except RedisError as error:
                await asyncio.sleep(self.outage.failed(f"reading the jobs of model {model}", error))

    async def _wait_for_room(self, at_most: float) -> None:
        self._finished.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._finished.wait(), timeout=at_most)

    async def _heartbeat(self) -> None:
        interval = self.visibility_ms / 3000
        while True:
            await asyncio.sleep(interval)
            for model, running in self._running.items():
                with contextlib.suppress(RedisError):  # the loops report an outage
                    await self.store.heartbeat(model, self.consumer, list(running))

    # ---- one run ---------------------------------------------------------------------------------

    async def _start(self, model: str, entries: list[Entry]) -> None:
        """Begin the runs of `entries` (one round trip to Redis for all of them) and run each in a task of its
        own. An entry not started stays pending and is taken over after the visibility timeout."""
        if not entries:
            return
        started = await self.store.start_many(model, entries, self.consumer,
                                              max_attempts=self.settings.jobs_max_attempts,
                                              ttl_seconds=self.settings.jobs_result_ttl_seconds,
                                              exhausted_error=EXHAUSTED_ERROR)
        for entry, claim in zip(entries, started, strict=True):
            if isinstance(claim, Claim):
                self._running[model][entry.entry_id] = asyncio.get_running_loop().create_task(
                    self._run(claim), name=f"job-{entry.job_id}")
            elif claim == "exhausted":
                self.metrics.jobs.labels(model, "failed").inc()
                logger.warning("job %s of model %s failed: %s", entry.job_id, model, EXHAUSTED_ERROR["error"])
            elif isinstance(claim, RedisError):  # a script error: not expected, and not the job's fault
                logger.warning("jobs: could not start job %s of model %s (%s: %s); it is taken over after the "
                               "visibility timeout", entry.job_id, model, type(claim).__name__, claim)

    async def _run(self, claim: Claim) -> None:
        try:
            await self._execute(claim)
        finally:
            self._running[claim.model].pop(claim.entry.entry_id, None)
            self._finished.set()

    async def _execute(self, claim: Claim) -> None:
        request = claim.request
        record = RequestRecord(request.request_id, request.protocol, "other", claim.model, method="JOB",
                               path=f"/v2/jobs/{claim.entry.job_id}", background=True)
        current_request_id.set(request.request_id)
        current_request.set(record)
        carrier = dict(request.trace)
        attributes = {tracing.MODEL: claim.model, tracing.PROTOCOL: request.protocol,
                      tracing.REQUEST_ID: request.request_id, "predictors.job.id": claim.entry.job_id,
                      "predictors.job.attempt": claim.attempts}
        result: bytes | None = None
        error: PredictorError | None = None
        with tracing.server_span(record, self.tracing_enabled(), carrier, f"job {claim.model}", attributes,
                                 kind=SpanKind.CONSUMER):
            try:
                result = await self.executor.run(claim.model, request)
            except Exception as failure:  # noqa: BLE001 - every failure is the job's outcome or a retry
                error = report_error(failure)
        await self._settle(claim, result, error)

    async def _settle(self, claim: Claim, result: bytes | None, error: PredictorError | None) -> None:
        settings, model = self.settings, claim.model
        if isinstance(error, (ServiceBusy, ModelNotReady)):
            # this process could not take it after all: not the job's fault, not a run; and no more for a while
            # (a batcher with a latency target refuses while its queue has room: no loop of refusals)
            pause = float(error.headers.get("Retry-After", 1)) if error.headers else 1.0
            self._paused_until[model] = time.monotonic() + min(REFUSED_PAUSE_MAX, pause)
            await self._persist(lambda: self.store.requeue(claim, None, count_attempt=False))
            return
        details = None if error is None else {"error": error.message, "code": error.code}
        if error is not None and details is not None and error.status >= 500 \
                and claim.attempts < settings.jobs_max_attempts:
            await self._persist(lambda: self.store.requeue(claim, details, count_attempt=True))
            logger.info("job %s: run %d of %d failed (%s); queued again", claim.entry.job_id, claim.attempts,
                        settings.jobs_max_attempts, details["code"])
            return
        written = await self._persist(lambda: self._finishes(Outcome(claim, result, details)))
        status = "succeeded" if error is None else "failed"
        if written is None:
            logger.warning("job %s: its outcome could not be written (Redis unavailable); it will run again",
                           claim.entry.job_id)
            return
        if not written:
            logger.info("job %s: outcome discarded (the job was cancelled or had ended already)",
                        claim.entry.job_id)
            return
        self.metrics.jobs.labels(model, status).inc()
        self.metrics.job_duration.labels(model).observe(max(0.0, time.time() - claim.created_ts))
        logger.info("job %s of model %s %s after %d run(s)", claim.entry.job_id, model, status, claim.attempts)

    async def _persist(self, write: Callable[[], Awaitable[T]]) -> T | None:
        """`write()`, retried while Redis is unreachable, until the visibility timeout (after which the entry
        may run elsewhere) or the shutdown deadline; None when it could not be written."""
        give_up = time.monotonic() + self.visibility_ms / 1000
        while True:
            try:
                outcome = await write()
                self.outage.ok()
                return outcome
            except RedisError as error:
                pause = self.outage.failed("writing a job's outcome", error)
                limit = give_up if self._deadline is None else min(give_up, self._deadline)
                if time.monotonic() + pause > limit:
                    return None
                await asyncio.sleep(pause)
