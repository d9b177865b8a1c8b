"""Long polls (``GET /v2/jobs/{id}?wait=S``) against real server processes sharing a real redis-server.

`runner` serves only `faulty` (`tests.support.faulty_predictors`: FORWARD_SLOW images take SLOW_SECONDS; one
item per batch, so three jobs in flight); `poller` serves only image-classification, so a `faulty` job is
always run by `runner` and a poll held on `poller` learns of its end from the other process. Nothing of the
server is imported here.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime as dt
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from predictors_client import AsyncClient, Client

from devtools.redis_server import RedisServer, run_redis
from tests.conftest import encode, sample_image
from tests.integration.test_faults import write_faulty_model
from tests.support import faults
from tests.support.server import ServerProcess, run_server

IC, FAULTY = "image-classification", "faulty"
SLOW_SECONDS = 2.0
IN_FLIGHT = 3  # the worker takes 3 x max_batch_size (1 for `faulty`) jobs at once
GRACE_SECONDS = 10
FINAL = frozenset({"succeeded", "failed", "cancelled"})


def faulty_image(width: int = faults.HEALTHY_WIDTH) -> bytes:
    return encode(sample_image(5, (width, 96)), "JPEG")


SLOW, HEALTHY = faulty_image(faults.FORWARD_SLOW), faulty_image()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with run_redis(tmp_path_factory.mktemp("long-poll-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def pair(redis_server: RedisServer, demo_repository: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """(`poller`, `runner`), started together on one Redis."""
    root = tmp_path_factory.mktemp("long-poll")
    faulty = write_faulty_model(demo_repository, root / "faulty-repo", slow_forward_seconds=SLOW_SECONDS) / FAULTY
    config = json.loads((faulty / "predictor.json").read_text())
    (faulty / "predictor.json").write_text(json.dumps({**config, "max_batch_size": 1}))
    common = ["--device", "cpu", "--log-format", "json", "--max-latency-ms", "5",
              "--shutdown-grace-seconds", str(GRACE_SECONDS)]
    env = {"PREDICTORS_JOBS_REDIS_URL": redis_server.url}
    with run_server([*common, "--jobs-consumer-name", "poller", "--model-dir", f"{IC}={demo_repository / IC}"],
                    root / "poller.log", env=env) as poller, \
            run_server([*common, "--jobs-consumer-name", "runner", "--model-dir", f"{FAULTY}={faulty}"],
                       root / "runner.log", env=env) as runner:
        poller.wait_ready([IC], timeout=600)
        runner.wait_ready([FAULTY], timeout=600)
        yield poller, runner


@pytest.fixture(scope="module")
def poller(pair: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return pair[0]


@pytest.fixture(scope="module")
def runner(pair: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return pair[1]


def submitted(server: ServerProcess, image: bytes) -> str:
    body = {"instances": [{"image": {"b64": base64.b64encode(image).decode()}}]}
    response = httpx.post(f"{server.url}/v1/models/{FAULTY}:submit", json=body, timeout=60)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def long_poll(server: ServerProcess, job_id: str, wait: str) -> tuple[httpx.Response, float]:
    """The answer and when it arrived (wall clock, as the server's job times)."""
    response = httpx.get(f"{server.url}/v2/jobs/{job_id}", params={"wait": wait}, timeout=60)
    return response, time.time()


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def job_lines(server: ServerProcess, job_id: str) -> list[dict[str, Any]]:
    return [line for line in server.json_log() if line.get("logger") == "predictors.access"
            and line.get("method") == "GET" and line.get("path") == f"/v2/jobs/{job_id}"]


def settled_job_lines(server: ServerProcess, job_id: str) -> list[dict[str, Any]]:
    """The access lines of GETs of `job_id`, once the last answer's line is written (after it was sent)."""
    deadline = time.monotonic() + 10
    while not job_lines(server, job_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    return job_lines(server, job_id)


# ---- answered when the job ends, wherever it ran --------------------------------------------------------


def test_a_poll_held_on_one_process_returns_as_soon_as_the_other_ends_the_job(
        pair: tuple[ServerProcess, ServerProcess], redis_server: RedisServer) -> None:
    poller, runner = pair
    job_id = submitted(runner, SLOW)
    (response, arrived), took = timed(lambda: long_poll(poller, job_id, "25"))
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["status"] == "succeeded" and document["result"]["predictions"], document
    assert redis_server.client().hget(f"predictors:job:{job_id}", "finished_by") == b"runner"
    assert took < 20  # not held to its wait
    assert arrived - epoch(document["finished_at"]) < 1.0  # woken by the end, not by a re-read


def test_a_poll_on_the_process_that_runs_the_job_returns_as_soon_as_it_ends(runner: ServerProcess) -> None:
    job_id = submitted(runner, HEALTHY)
    response, arrived = long_poll(runner, job_id, "25")
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
    assert arrived - epoch(response.json()["finished_at"]) < 1.0


def test_a_poll_on_a_job_that_cannot_end_in_time_answers_after_its_wait(poller: ServerProcess,
                                                                         runner: ServerProcess) -> None:
    job_id = submitted(runner, SLOW)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        held = [pool.submit(timed, lambda: long_poll(poller, job_id, "1.5")) for _ in range(3)]
        time.sleep(0.3)
        # health and readiness answer while polls are held (a held poll is no work for the event loop)
        for path in ("/v2/health/live", "/v2/health/ready"):
            probe, took = timed(lambda path=path: httpx.get(poller.url + path, timeout=30))
            assert probe.status_code == 200 and took < 1.0
        for future in held:
            (response, _), took = future.result()
            assert response.status_code == 200 and response.json()["status"] in ("queued", "running")
            assert 1.5 <= took < 4.0
    lines = settled_job_lines(poller, job_id)
    assert len(lines) == 3
    for line in lines:  # the usual access line: a 200 that took its wait, not an error
        assert (line["status"], line["code"]) == (200, "OK") and line["latency_ms"]["total"] >= 1500
    (response, _), took = timed(lambda: long_poll(poller, job_id, "0"))  # 0: at once, as without `wait`
    assert response.status_code == 200 and response.json()["status"] in FINAL | {"queued", "running"}
    assert took < 1.0


def test_cancelling_a_job_answers_its_held_poll_at_once(poller: ServerProcess, runner: ServerProcess) -> None:
    job_id = submitted(runner, SLOW)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(long_poll, poller, job_id, "25")
        time.sleep(0.5)
        cancelled = httpx.delete(f"{runner.url}/v2/jobs/{job_id}", timeout=30)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        asked = time.time()
        response, arrived = held.result(timeout=30)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert arrived - asked < 1.0


@pytest.mark.parametrize("wait", ["abc", "-1", "nan", "inf", ""])
def test_a_wait_that_is_not_a_number_of_seconds_is_invalid(poller: ServerProcess, runner: ServerProcess,
                                                           wait: str) -> None:
    job_id = submitted(runner, HEALTHY)
    response, _ = long_poll(poller, job_id, wait)
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "code", "request_id"} and body["code"] == "INVALID_INPUT"
    assert body["request_id"] == response.headers["x-request-id"] and "wait" in body["error"]


def test_an_unknown_job_is_not_found_at_once(poller: ServerProcess) -> None:
    (response, _), took = timed(lambda: long_poll(poller, "0" * 32, "25"))
    assert (response.status_code, response.json()["code"]) == (404, "JOB_NOT_FOUND") and took < 2.0


# ---- the SDK ---------------------------------------------------------------------------------------------


def test_the_sdk_waits_for_a_job_with_one_request(poller: ServerProcess, runner: ServerProcess) -> None:
    with Client(runner.url) as submitter, Client(poller.url, timeout=60) as client:
        job = submitter.submit(FAULTY, {"image": SLOW})
        done = client.wait(job.id)
        assert done.status == "succeeded"
    (line,) = settled_job_lines(poller, job.id)  # one GET, answered when the job ended
    assert line["latency_ms"]["total"] >= 500

    async def asynchronously() -> str:
        async with AsyncClient(runner.url) as submitter, AsyncClient(poller.url, timeout=60) as client:
            job = await submitter.submit(FAULTY, {"image": SLOW})
            assert (await client.wait(job)).status == "succeeded"
            return job.id

    assert len(settled_job_lines(poller, asyncio.run(asynchronously()))) == 1


# ---- shutdown (last: it stops `runner`) ------------------------------------------------------------------


def test_sigterm_answers_held_polls_at_once_and_the_server_exits_in_its_grace(runner: ServerProcess) -> None:
    ids = [submitted(runner, SLOW) for _ in range(IN_FLIGHT + 1)]  # the last one waits in the queue
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        held = [pool.submit(long_poll, runner, ids[-1], "25") for _ in range(2)]
        time.sleep(1.0)
        assert not any(future.done() for future in held)
        signalled = time.time()
        runner.process.send_signal(signal.SIGTERM)
        for future in held:
            response, arrived = future.result(timeout=30)
            assert response.status_code == 200 and response.json()["status"] == "queued", response.text
            assert arrived - signalled < 1.5  # not held until the running jobs are drained
        assert runner.process.wait(timeout=GRACE_SECONDS + 10) == 0
        assert time.time() - signalled < GRACE_SECONDS + 5
