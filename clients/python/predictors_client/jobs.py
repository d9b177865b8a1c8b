"""Asynchronous jobs: the server queues a request and answers at once; the result is fetched later.

`Job` is the server's job document; `Polling` is how `wait` spaces its polls (short at first, for fast
models, then further apart, for jobs that wait in a long queue).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import httpx

from predictors_client.errors import STATUS_BY_CODE, PredictorError, UnexpectedResponse, error_for
from predictors_client.wire import InferResult, decode_document

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


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

    def pauses(self) -> Any:
        pause = self.first
        while True:
            yield random.uniform(0.8, 1.0) * pause
            pause = min(self.longest, pause * self.factor)


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

