"""`JobStore`: asynchronous jobs in Redis, one stream and one consumer group per model.

- ``predictors:jobs:{model}``: the model's stream; an entry (field ``job``) is one queued run of a job.
  Consumer group ``predictors`` (created with MKSTREAM at id 0); each server process is one consumer.
- ``predictors:job:{id}``: the job's hash (status, times, attempts, the submitted request until it ran,
  then its result or error), expiring ``jobs_result_ttl_seconds`` after submission and again after it
  finished.
- ``predictors:idem:{model}:{key}``: an ``Idempotency-Key``'s job id, with the job's TTL.
- ``predictors:job-ended`` (a pub/sub channel, not a key): the id of each job that just became final.

Every change of a job's state is one Lua script (`scripts.py`), so that a result is written once even when
two processes ran the same job (one was thought dead and its entry reclaimed): the first outcome wins, a
later one is discarded. No server code (KServe, torch) is imported here.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError, ResponseError

from predictors.errors import ServiceBusy
from predictors.jobs import scripts

GROUP = "predictors"
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
#: the job's fields a caller sees (GET /v2/jobs/{id}), besides its result or error
_PUBLIC_FIELDS = ("id", "model", "status", "created_at", "started_at", "finished_at", "attempts")


def stream_key(model: str) -> str:
    return f"predictors:jobs:{model}"


def job_key(job_id: str) -> str:
    return f"predictors:job:{job_id}"


def idempotency_key(model: str, key: str) -> str:
    return f"predictors:idem:{model}:{key}"


#: where the scripts that make a job final publish its id (`ended.py` wakes the long polls waiting for it)
JOB_ENDED_CHANNEL = "predictors:job-ended"


def iso(moment: datetime) -> str:
    """UTC, milliseconds, ``Z``: the form of every time of a job."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(datetime.now(timezone.utc))


def new_job_id() -> str:
    return uuid.uuid4().hex


def connect(url: str, *, socket_timeout: float = 2.0) -> Redis:
    """A client for `url` that fails fast: a short connect timeout and no retries of its own (the callers
    decide: a submit answers 503 at once, the worker retries with back-off)."""
    return Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=1.0,
                          retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=30)


#: the stored trace-context headers, in the order the claim script returns them
TRACE_FIELDS = ("traceparent", "tracestate")


@dataclass(frozen=True)
class StoredRequest:
    """What the synchronous route would have received: the body and the headers that shape its decoding."""

    protocol: Literal["v1", "v2"]
    body: bytes
    content_type: str = ""
    #: v2 binary extension: the JSON header's length (``Inference-Header-Content-Length``); "" otherwise
    header_length: str = ""
    request_id: str = ""
    #: the submitter's W3C trace context (``traceparent``, ``tracestate`` where sent): the run joins its trace
    trace: Mapping[str, str] = field(default_factory=dict)
    #: v1 uploads may carry parameters in the query string (`codecs.forms`)
    query: str = ""


@dataclass(frozen=True)
class Submitted:
    job_id: str
    #: when the job was made; "" when an earlier submit with the same Idempotency-Key made it
    created_at: str


@dataclass(frozen=True)
class Entry:
    """One stream entry: a queued run of a job."""

    entry_id: str
    job_id: str


@dataclass(frozen=True)
class Claim:
    """A run a consumer took: the job, its attempt number and the request to run."""

    model: str
    entry: Entry
    attempts: int
    request: StoredRequest
    created_ts: float


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its result (JSON), or its error when it failed."""

    claim: Claim
    result: bytes | None = None
    error: Mapping[str, str] | None = None


@dataclass(frozen=True)
class JobView:
    """The job as a caller sees it; `outcome` is the raw JSON of its result or error, if any."""

    fields: dict[str, Any]
    outcome_name: str | None = None
    outcome: bytes | None = None

    @property
    def status(self) -> str:
        return str(self.fields["status"])

    def to_json(self) -> bytes:
        """The document, with the stored result spliced in as it is (it can be megabytes of JSON)."""
        document = orjson.dumps(self.fields)
        if self.outcome_name is None or self.outcome is None:
            return document
        return document[:-1] + b',"' + self.outcome_name.encode() + b'":' + self.outcome + b"}"


def _text(value: bytes | None) -> str:
    return value.decode() if value is not None else ""


class JobStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._submit = redis.register_script(scripts.SUBMIT)
        self._start = redis.register_script(scripts.START)
        self._finish = redis.register_script(scripts.FINISH)
        self._requeue = redis.register_script(scripts.REQUEUE)
        self._cancel = redis.register_script(scripts.CANCEL)

    async def aclose(self) -> None:
        await self.redis.aclose()

    # ---- callers ---------------------------------------------------------------------------------

    async def submit(self, model: str, request: StoredRequest, *, ttl_seconds: int, max_backlog: int,
                     idempotency: str | None = None) -> Submitted:
        """Queue a job (or find the one this Idempotency-Key made); ServiceBusy when the backlog is full."""
        job_id = new_job_id()
        created = datetime.now(timezone.utc)
        fields: dict[str, str | bytes] = {
            "id": job_id, "model": model, "status": "queued", "created_at": iso(created),
            "created_ts": repr(created.timestamp()), "attempts": "0",
            "protocol": request.protocol, "body": request.body, "content_type": request.content_type,
            "header_length": request.header_length, "request_id": request.request_id,
            **{key: request.trace.get(key, "") for key in TRACE_FIELDS}, "query": request.query,
        }
        keys = [stream_key(model), job_key(job_id)]
        if idempotency is not None:
            keys.append(idempotency_key(model, idempotency))
        args: list[Any] = [ttl_seconds, max_backlog, job_id]
        for name, value in fields.items():
            args += [name, value]
        outcome, value = await self._submit(keys=keys, args=args)
        if outcome == b"busy":
            raise ServiceBusy(f"model '{model}' has {int(value)} unfinished jobs (limit {max_backlog}); "
                              "retry later", retry_after_seconds=5)
        return Submitted(value.decode(), str(fields["created_at"]) if outcome == b"created" else "")

    async def get(self, job_id: str) -> JobView | None:
        names = (*_PUBLIC_FIELDS, "result", "error")
        values: list[bytes | None] = await self.redis.hmget(job_key(job_id), names)  # type: ignore[assignment]
        stored = dict(zip(names, values, strict=True))
        if stored["status"] is None:
            return None
        fields: dict[str, Any] = {name: _text(stored[name]) or None for name in _PUBLIC_FIELDS}
        fields["attempts"] = int(stored["attempts"] or 0)
        if fields["status"] == "succeeded" and stored["result"] is not None:
            return JobView(fields, "result", stored["result"])
        if fields["status"] == "failed" and stored["error"] is not None:
            return JobView(fields, "error", stored["error"])
        return JobView(fields)

    async def cancel(self, job_id: str) -> bool | None:
        """Cancel a queued or running job: True when this call cancelled it, False when it had ended
        already, None when there is no such job."""
        answer = await self._cancel(keys=[job_key(job_id)], args=[now_iso(), JOB_ENDED_CHANNEL, job_id])
        return None if not answer else bool(answer[0])

    async def backlog(self, model: str) -> int:
        """Unfinished runs of the model's jobs (queued, running, or cancelled and not yet skipped)."""
        return int(await self.redis.xlen(stream_key(model)))

    async def oldest_age_seconds(self, model: str) -> float:
        """How long ago the oldest unfinished run of the model's jobs was queued (its stream entry's id is the
        time Redis added it, in ms); 0 when there is none."""
        first = await self.redis.xrange(stream_key(model), count=1)
        if not first:
            return 0.0
        entry_id = first[0][0]
        text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        queued_ms = int(text.split("-", 1)[0])
        return max(0.0, time.time() - queued_ms / 1000)

    # ---- consumers -------------------------------------------------------------------------------

    async def ensure_group(self, model: str) -> None:
        try:
            await self.redis.xgroup_create(stream_key(model), GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, model: str, consumer: str, count: int, block_ms: int) -> list[Entry]:
        """Up to `count` entries never delivered before, waiting up to `block_ms` for the first."""
        async with self._group_lost(model):
            answer: list[Any] | None = await self.redis.xreadgroup(  # type: ignore[assignment]
                GROUP, consumer, {stream_key(model): ">"}, count=count, block=block_ms)
            return [entry for _, entries in answer or [] for entry in _entries(entries)]
        return []

    async def reclaim(self, model: str, consumer: str, min_idle_ms: int, count: int,
                      cursor: str) -> tuple[str, list[Entry]]:
        """Entries delivered to any consumer and idle longer than `min_idle_ms`, now this consumer's; and
        the cursor to continue from ("0-0" once the whole pending list was scanned)."""
        async with self._group_lost(model):
            answer: list[Any] = await self.redis.xautoclaim(  # type: ignore[assignment]
                stream_key(model), GROUP, consumer, min_idle_ms, cursor, count=count)
            return _text(answer[0]), _entries(answer[1])
        return "0-0", []

    @contextlib.asynccontextmanager
    async def _group_lost(self, model: str) -> AsyncIterator[None]:
        """The consumer group is gone (Redis lost its data, or the stream was deleted): make it again; the
        block's result is then nothing."""
        try:
            yield
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            await self.ensure_group(model)

    async def heartbeat(self, model: str, consumer: str, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries this consumer is running, so that nobody reclaims them."""
        if entry_ids:
            await self.redis.xclaim(stream_key(model), GROUP, consumer, 0, list(entry_ids), justid=True)

    async def start(self, model: str, entry: Entry, consumer: str, *, max_attempts: int, ttl_seconds: int,
                    exhausted_error: Mapping[str, str]) -> Claim | Literal["skipped", "exhausted"]:
        """Begin a run. "skipped": the entry is dropped (its job was cancelled, has ended, expired, or was
        queued again under a newer entry); "exhausted": the job had used its runs and is failed now with
        its last error (else `exhausted_error`)."""
        (started,) = await self.start_many(model, [entry], consumer, max_attempts=max_attempts,
                                            ttl_seconds=ttl_seconds, exhausted_error=exhausted_error)
        if isinstance(started, BaseException):
            raise started
        return started

    async def start_many(self, model: str, entries: Sequence[Entry], consumer: str, *, max_attempts: int,
                         ttl_seconds: int, exhausted_error: Mapping[str, str],
                         ) -> list[Claim | Literal["skipped", "exhausted"] | RedisError]:
        """`start` for each entry, in one round trip to Redis; an entry whose script failed has its error in
        its place. RedisError: the trip itself failed (none, some or all of them may have started: a started
        one is taken over after the visibility timeout, as when its process dies)."""
        now, exhausted = now_iso(), orjson.dumps(exhausted_error)
        answers = await self._in_one_trip([
            (self._start, [job_key(entry.job_id), stream_key(model)],
             [entry.entry_id, GROUP, consumer, now, max_attempts, ttl_seconds, exhausted, JOB_ENDED_CHANNEL,
              entry.job_id])
            for entry in entries
        ])
        return [answer if isinstance(answer, RedisError) else _started(model, entry, answer)
                for entry, answer in zip(entries, answers, strict=True)]

    async def finish(self, claim: Claim, consumer: str, *, result: bytes | None = None,
                     error: Mapping[str, str] | None = None, ttl_seconds: int) -> bool:
        """Write the run's result (succeeded) or error (failed) unless the job already ended; True when
        written. Acknowledges and drops the entry either way."""
        (written,) = await self.finish_many([Outcome(claim, result, error)], consumer, ttl_seconds=ttl_seconds)
        if isinstance(written, BaseException):
            raise written
        return written

    async def finish_many(self, outcomes: Sequence[Outcome], consumer: str, *,
                          ttl_seconds: int) -> list[bool | RedisError]:
        """`finish` for each outcome, in one round trip to Redis; an outcome whose script failed has its
        error in its place. RedisError: the trip itself failed."""
        now = now_iso()
        calls = []
        for outcome in outcomes:
            status, name, payload = ("succeeded", "result", outcome.result) if outcome.error is None else \
                ("failed", "error", orjson.dumps(outcome.error))
            calls.append((self._finish, [job_key(outcome.claim.entry.job_id), stream_key(outcome.claim.model)],
                          [outcome.claim.entry.entry_id, GROUP, status, name, payload or b"null", now, ttl_seconds,
                           consumer, JOB_ENDED_CHANNEL, outcome.claim.entry.job_id]))
        return [answer if isinstance(answer, RedisError) else answer == b"written"
                for answer in await self._in_one_trip(calls)]

    async def _in_one_trip(self, calls: Sequence[tuple[AsyncScript, list[str], list[Any]]]) -> list[Any]:
        """Run the scripts in one pipeline (no MULTI: each script is atomic on its own), by their SHA1 only:
        a redis-py pipeline of `Script` objects would ask Redis whether they exist on every execution, a
        second round trip. A script Redis does not have (restarted, SCRIPT FLUSH) is loaded and run again on
        its own: NOSCRIPT means it did not run."""
        if len(calls) == 1:  # a pipeline costs more than a call
            script, keys, args = calls[0]
            try:
                return [await script(keys=keys, args=args)]
            except ResponseError as error:
                return [error]
        pipeline = self.redis.pipeline(transaction=False)
        for script, keys, args in calls:
            pipeline.evalsha(script.sha, len(keys), *keys, *args)
        answers: list[Any] = await pipeline.execute(raise_on_error=False)
        for index, answer in enumerate(answers):
            if isinstance(answer, NoScriptError):
                script, keys, args = calls[index]
                try:
                    answers[index] = await script(keys=keys, args=args)
                except ResponseError as error:
                    answers[index] = error
            elif isinstance(answer, BaseException) and not isinstance(answer, ResponseError):
                raise answer
        return answers

    async def requeue(self, claim: Claim, error: Mapping[str, str] | None, *, count_attempt: bool) -> bool:
        """Queue the job again (a new entry at the stream's end); `error` is noted as its last error."""
        answer = await self._requeue(
            keys=[job_key(claim.entry.job_id), stream_key(claim.model)],
            args=[claim.entry.entry_id, GROUP, claim.entry.job_id, orjson.dumps(error) if error else "",
                  "1" if count_attempt else "0"],
        )
        return bool(answer == b"requeued")

    async def forget_consumer(self, model: str, consumer: str) -> bool:
        """Remove this consumer from the group when it holds no entries (a clean shutdown), so that the
        group does not collect one consumer per pod ever started. True when removed."""
        pending = await self.redis.xpending_range(stream_key(model), GROUP, min="-", max="+", count=1,
                                                  consumername=consumer)
        if pending:
            return False
        await self.redis.xgroup_delconsumer(stream_key(model), GROUP, consumer)
        return True


def _started(model: str, entry: Entry, answer: Any) -> Claim | Literal["skipped", "exhausted"]:
    if answer[0] != b"run":
        return "exhausted" if answer[0] == b"exhausted" else "skipped"
    attempts, protocol, body, content_type, header_length, request_id, traceparent, tracestate, query, \
        created = answer[1:]
    trace = {key: _text(value) for key, value in zip(TRACE_FIELDS, (traceparent, tracestate), strict=True) if value}
    request = StoredRequest("v1" if protocol == b"v1" else "v2", body or b"", _text(content_type),
                            _text(header_length), _text(request_id), trace, _text(query))
    return Claim(model, entry, int(attempts), request, float(created or 0))


def _entries(raw: Sequence[Any]) -> list[Entry]:
    entries = []
    for entry_id, fields in raw:
        if fields and b"job" in fields:  # a deleted entry comes back without its fields
            entries.append(Entry(_text(entry_id), _text(fields[b"job"])))
    return entries
