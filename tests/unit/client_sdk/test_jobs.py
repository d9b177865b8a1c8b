"""The SDK's job documents and outcomes, without a server (the real server: tests/integration/test_jobs.py)."""

from __future__ import annotations

import itertools

import httpx
import pytest
from predictors_client import InvalidImage, Job, JobCancelled, JobsUnavailable, Polling, PredictorError, RetryPolicy
from predictors_client.jobs import job_from, outcome

RESULT = {"model_name": "m", "id": "r", "parameters": None, "outputs": [
    {"name": "labels", "shape": [1, 2], "datatype": "BYTES", "parameters": None, "data": ["cat", "dog"]},
    {"name": "scores", "shape": [1, 2], "datatype": "FP32", "parameters": None, "data": [0.75, 0.25]}]}


def a_job(status: str, **fields: object) -> Job:
    return Job(id="j1", model="m", status=status, created_at="2026-01-01T00:00:00.000Z", **fields)  # type: ignore[arg-type]


def test_a_job_document_is_read() -> None:
    response = httpx.Response(200, json={"id": "j1", "model": "m", "status": "succeeded", "created_at": "t0",
                                         "started_at": "t1", "finished_at": "t2", "attempts": 2, "result": RESULT})
    job = job_from(response, "rid")
    assert (job.id, job.status, job.attempts, job.done) == ("j1", "succeeded", 2, True)
    assert outcome(job)["scores"].data == [0.75, 0.25]
    assert outcome(job)["labels"].rows() == [["cat", "dog"]]


def test_a_failed_job_raises_its_error_with_the_synchronous_status() -> None:
    with pytest.raises(InvalidImage) as caught:
        outcome(a_job("failed", error={"error": "not an image", "code": "INVALID_IMAGE"}))
    assert (caught.value.status, caught.value.message, caught.value.request_id) == (400, "not an image", "j1")
    with pytest.raises(PredictorError) as unknown:
        outcome(a_job("failed", error={"error": "new", "code": "SOMETHING_NEW"}))
    assert (unknown.value.code, unknown.value.status) == ("SOMETHING_NEW", None)
    with pytest.raises(JobCancelled):
        outcome(a_job("cancelled"))


def test_jobs_unavailable_is_retried_after_its_retry_after() -> None:
    error = JobsUnavailable("redis down", status=503, retry_after=5.0)
    delay = RetryPolicy().delay(0, error, remaining=60.0)
    assert delay is not None and 5.0 <= delay <= 5.5


def test_polls_start_short_and_stay_bounded() -> None:
    pauses = list(itertools.islice(Polling(first=0.05, factor=2.0, longest=1.0).pauses(), 8))
    assert pauses[0] <= 0.05 and max(pauses) <= 1.0
    assert pauses[-1] >= 0.8  # the longest pause, jittered down by at most 20 %
