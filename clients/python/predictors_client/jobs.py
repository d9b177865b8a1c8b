"""Asynchronous jobs: the server queues a request and answers at once; the result is fetched later.

`Job` is the server's job document. `wait` sends long polls (``GET /v2/jobs/{id}?wait=W``): the server
holds each until the job has ended or W seconds passed, so one request usually suffices and the result
arrives as soon as it exists. `LongPolls` spaces them; `Polling` is its pause after an answer that came
back early with the job unfinished (a server older than long polls ignores ``wait``; a server shutting
down answers held polls at once): short at first, for fast models, then further apart.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from predictors_client.errors import STATUS_BY_CODE, PredictorError, Timeout, UnexpectedResponse, error_for
from predictors_client.wire import InferResult, decode_document

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
#: the longest one long poll of `wait` asks the server to hold (the server holds at most 30 s: ingresses and
#: load balancers commonly cut requests idle for 60 s)
LONG_POLL_SECONDS = 20.0
#: a long poll's HTTP timeout exceeds its hold by at least this, so its answer after the hold is never cut off
LONG_POLL_GRACE_SECONDS = 5.0


class JobCancelled(PredictorError):
    """`result` of a job that was cancelled (``DELETE /v2/jobs/{id}``): it has no result."""

    code = "JOB_CANCELLED"


@dataclass(frozen=True)
class Job:
    """A job as the server last described it. `result` is the v2 answer the synchronous route would have
    given (as JSON); `error` is ``{"error", "code"}`` of a failed job."""

    id: str
    model: str
    status: str  # queued | running | succeeded | failed | cancelled
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 0
    result: dict[str, Any] | None = field(default=None, repr=False)
    error: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class Polling:
    """`wait` polls after `first` seconds, then each pause `factor` times longer (with jitter), at most
    `longest` seconds apart."""

    first: float = 0.05
    factor: float = 1.5
    longest: float = 2.0

    def pauses(self) -> Iterator[float]:
        pause = self.first
        while True:
            yield random.uniform(0.8, 1.0) * pause
            pause = min(self.longest, pause * self.factor)


class LongPolls:
    """The requests of one `wait`: each a long poll of the time left (at most `LONG_POLL_SECONDS`); after an
    answer that came back before its hold with the job unfinished, the next `Polling` pause first."""

    def __init__(self, job: Job | str, timeout: float, polling: Polling | None = None) -> None:
        self.job_id = job_id(job)
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._pauses = (polling or Polling()).pauses()
        self._hold = 0.0
        self._sent = 0.0

    def hold(self, current: Job | None) -> float:
        """The next request's hold in seconds (``?wait=``); `Timeout` when no time is left."""
        now = time.monotonic()
        remaining = self.deadline - now
        if remaining <= 0:
            status = current.status if current is not None else "unknown"
            raise Timeout(f"job {self.job_id} did not finish within {self.timeout:.3g} s (it is {status})",
                          request_id=self.job_id)
        self._hold, self._sent = min(remaining, LONG_POLL_SECONDS), now
        return self._hold

    def pause(self) -> float:
        """Seconds to wait before the next request, after an answer with the job unfinished: none when the
        server held the request for its whole hold, else the next `Polling` pause (within the deadline)."""
        now = time.monotonic()
        if now - self._sent >= self._hold:
            return 0.0
        return max(0.0, min(next(self._pauses), self.deadline - now))


def long_poll_path(job: Job | str, hold: float) -> str:
    return f"/v2/jobs/{job_id(job)}?wait={hold:.3f}"


def job_from(response: httpx.Response, request_id: str) -> Job:
    try:
        document = response.json()
        return Job(
            id=str(document["id"]), model=str(document["model"]), status=str(document["status"]),
            created_at=str(document["created_at"]), started_at=document.get("started_at"),
            finished_at=document.get("finished_at"), attempts=int(document.get("attempts") or 0),
            result=document.get("result"), error=document.get("error"),
        )
    except (ValueError, KeyError, TypeError):
        raise UnexpectedResponse(f"not a job document: {response.text[:300]!r}", status=response.status_code,
                                 request_id=request_id) from None


def job_id(job: Job | str) -> str:
    return job.id if isinstance(job, Job) else job


def outcome(job: Job) -> InferResult:
    """A finished job's result as an `InferResult`; its error (or cancellation) as an exception."""
    if job.status == "succeeded" and job.result is not None:
        return decode_document(job.result, b"", 0, job.id)
    if job.status == "cancelled":
        raise JobCancelled(f"job {job.id} was cancelled: it has no result", request_id=job.id)
    if job.status == "failed" and job.error is not None:
        code = str(job.error.get("code", "ERROR"))
        raise error_for(code, str(job.error.get("error", "")), STATUS_BY_CODE.get(code), job.id)
    raise UnexpectedResponse(f"job {job.id} is {job.status}, without a result or an error", request_id=job.id)

