"""`JobService`: what the job routes do (submit, get, cancel), with the checks and the error mapping.

A submission is checked as the synchronous route checks a request (body, codec, parameters, images) and
refused with the same 4xx before anything is queued. Redis being unreachable (or refusing writes) is
503 `JOBS_UNAVAILABLE` with `Retry-After`, answered within the client's short timeouts; the synchronous
routes never touch Redis.

``GET /v2/jobs/{id}?wait=S`` is a long poll: it answers as soon as the job is final, else after S seconds
(at most `MAX_WAIT_SECONDS`) with the job as it is then; `ended.py` wakes it when the job ends anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Literal

import orjson
from redis.exceptions import RedisError

from predictors.dataplane.dataplane import INFERENCE_HEADER_LENGTH, PredictorDataPlane
from predictors.dataplane.kserve_model import KServeModel
from predictors.errors import InvalidInput, JobNotFound, JobsUnavailable
from predictors.jobs.ended import REREAD_SECONDS, JobEndings
from predictors.jobs.execute import JobExecutor
from predictors.jobs.store import FINAL_STATUSES, TRACE_FIELDS, JobStore, JobView, StoredRequest
from predictors.settings import Settings
from predictors.telemetry.context import current_request_id
from predictors.telemetry.metrics import Metrics

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "idempotency-key"
_JOB_ID = re.compile(r"[0-9a-f]{32}")
#: visible ASCII: the key becomes part of a Redis key name and of logs
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
#: what a caller is told to wait when Redis cannot be reached
UNAVAILABLE_RETRY_AFTER_SECONDS = 5
#: the longest a long poll is held, whatever it asks: ingresses and load balancers commonly cut requests
#: idle for 60 s (and some for less), and an answer after 30 s leaves room for the network and a retry
MAX_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Accepted:
    """A submission's answer: 202 with the job's place and its document."""

    location: str
    body: bytes


class JobService:
    def __init__(self, settings: Settings, store: JobStore, dataplane: PredictorDataPlane, metrics: Metrics,
                 endings: JobEndings | None = None) -> None:
        self.settings = settings
        self.store = store
        #: wakes the long polls; without it `get` answers at once whatever `wait_seconds` asks
        self.endings = endings
        self.dataplane = dataplane
        self.executor = JobExecutor(dataplane)
        self.metrics = metrics

    async def submit(self, model_name: str, protocol: Literal["v1", "v2"], body: bytes,
                     headers: Mapping[str, str], query: str = "") -> Accepted:
        model = await self.dataplane.get_model(model_name)
        assert isinstance(model, KServeModel)
        idempotency = headers.get(IDEMPOTENCY_HEADER)
        if idempotency is not None and not _IDEMPOTENCY_KEY.fullmatch(idempotency):
            raise InvalidInput("Idempotency-Key must be 1 to 255 visible ASCII characters")
        request = StoredRequest(
            protocol, body, content_type=headers.get("content-type", ""),
            header_length=headers.get(INFERENCE_HEADER_LENGTH, ""), request_id=current_request_id.get(),
            trace={key: headers[key] for key in TRACE_FIELDS if headers.get(key)}, query=query,
        )
        await self.executor.check(model, request)
        async with _redis(f"submitting a job to model '{model_name}'"):
            submitted = await self.store.submit(
                model_name, request, ttl_seconds=self.settings.jobs_result_ttl_seconds,
                max_backlog=self.settings.jobs_max_backlog, idempotency=idempotency)
        if submitted.created_at:
            self.metrics.jobs.labels(model_name, "queued").inc()
            fields = {"id": submitted.job_id, "model": model_name, "status": "queued",
                      "created_at": submitted.created_at}
        else:  # the job this Idempotency-Key made earlier, as it is now
            view = await self._view(submitted.job_id, "reading")
            fields = {name: view.fields[name] for name in ("id", "model", "status", "created_at")}
        return Accepted(f"/v2/jobs/{submitted.job_id}", orjson.dumps(fields))

    async def get(self, job_id: str, wait: float = 0.0) -> bytes:
        """The job; with `wait` > 0 (seconds), once it is final or when that time (capped) has passed."""
        if wait <= 0 or self.endings is None:
            return (await self._view(job_id, "reading")).to_json()
        return (await self._held(job_id, min(wait, MAX_WAIT_SECONDS), self.endings)).to_json()

    async def _held(self, job_id: str, hold: float, endings: JobEndings) -> JobView:
        _check_id(job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold
        # Registered and subscribed before the first read: an end published after that read wakes it.
        with endings.waiter(job_id) as ended:
            subscribed = await endings.subscribed(hold)
            while True:
                ended.clear()
                view = await self._view(job_id, "reading")
                remaining = deadline - loop.time()
                # not subscribed (Redis unreachable, or shutting down): answered at once, as a plain GET
                if not subscribed or endings.released or view.status in FINAL_STATUSES or remaining <= 0:
                    return view
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ended.wait(), min(remaining, REREAD_SECONDS))

    async def cancel(self, job_id: str) -> bytes:
        _check_id(job_id)
        async with _redis(f"cancelling job '{job_id}'"):
            cancelled = await self.store.cancel(job_id)
        if cancelled is None:
            raise _not_found(job_id)
        view = await self._view(job_id, "reading")
        if cancelled:
            self.metrics.jobs.labels(view.fields["model"], "cancelled").inc()
        return view.to_json()

    async def _view(self, job_id: str, doing: str) -> JobView:
        _check_id(job_id)
        async with _redis(f"{doing} job '{job_id}'"):
            view = await self.store.get(job_id)
        if view is None:
            raise _not_found(job_id)
        return view


def wait_seconds(raw: str | None) -> float:
    """The ``wait`` query parameter of a GET: absent is 0 (answer at once); not a finite number >= 0 is
    400 INVALID_INPUT."""
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(f"wait must be a number of seconds >= 0 (at most {MAX_WAIT_SECONDS:g} are waited), "
                           f"got {raw[:40]!r}")
    return seconds


def _check_id(job_id: str) -> None:
    if not _JOB_ID.fullmatch(job_id):
        raise _not_found(job_id)


def _not_found(job_id: str) -> JobNotFound:
    return JobNotFound(f"no job '{job_id}': never submitted, or expired (results are kept for "
                       "jobs_result_ttl_seconds)")


@contextlib.asynccontextmanager
async def _redis(doing: str) -> AsyncIterator[None]:
    """Redis failures as 503 JOBS_UNAVAILABLE (the caller retries later)."""
    try:
        yield
    except RedisError as error:
        raise JobsUnavailable(f"the job queue (Redis) is unavailable while {doing}: {type(error).__name__}; "
                              "retry later", retry_after_seconds=UNAVAILABLE_RETRY_AFTER_SECONDS) from error
