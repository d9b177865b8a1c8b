"""The SDK's job documents, outcomes and the spacing of `wait`'s long polls, without a server (the real server:
tests/integration/test_jobs.py and test_jobs_long_poll.py)."""

from __future__ import annotations

import itertools
import time

import httpx
import pytest
from predictors_client import (
    Client,
    InvalidImage,
    Job,
    JobCancelled,
    JobsUnavailable,
    Polling,
    PredictorError,
    RetryPolicy,
    Timeout,
)
from predictors_client.jobs import LONG_POLL_SECONDS, LongPolls, job_from, long_poll_path, outcome

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


def test_a_long_poll_asks_for_the_time_left_at_most_twenty_seconds() -> None:
    assert LongPolls("j1", timeout=100.0).hold(None) == LONG_POLL_SECONDS == 20.0
    assert 0.2 < LongPolls("j1", timeout=0.3).hold(None) <= 0.3
    assert long_poll_path(a_job("queued"), 12.5) == "/v2/jobs/j1?wait=12.500"
    with pytest.raises(Timeout, match="did not finish within 0 s"):
        LongPolls("j1", timeout=0.0).hold(a_job("running"))


def test_after_a_full_hold_the_next_poll_goes_at_once_after_an_early_answer_it_backs_off() -> None:
    polls = LongPolls("j1", timeout=60.0, polling=Polling(first=0.5, factor=2.0, longest=1.0))
    polls.hold(None)
    assert 0.4 <= polls.pause() <= 0.5  # answered before its hold: a server without long polls
    polls.hold(None)
    assert 0.8 <= polls.pause() <= 1.0
    short = LongPolls("j1", timeout=60.0)
    hold = short.hold(None)
    short._hold = 0.0  # as if the server had held the request for its whole hold
    assert hold == 20.0 and short.pause() == 0.0


def test_wait_against_a_server_that_ignores_wait_polls_with_back_off() -> None:
    """A server older than long polls answers at once: `wait` then spaces its requests as `Polling` says."""
    sent: list[tuple[float, str]] = []

    def old_server(request: httpx.Request) -> httpx.Response:
        sent.append((time.monotonic(), request.url.params.get("wait", "")))
        status = "succeeded" if len(sent) == 4 else "running"
        return httpx.Response(200, json={"id": "j1", "model": "m", "status": status, "created_at": "t0"})

    with Client("http://old", transport=httpx.MockTransport(old_server)) as client:
        done = client.wait("j1", timeout=30.0, polling=Polling(first=0.1, factor=2.0, longest=0.3))
    assert done.status == "succeeded" and len(sent) == 4
    assert all(float(wait) > 20.0 - 1 for _, wait in sent)  # every request asked for a long poll
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(sent)]
    assert 0.08 <= gaps[0] < 0.2 and 0.16 <= gaps[1] < 0.3 and 0.24 <= gaps[2] < 0.4
