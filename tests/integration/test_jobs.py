"""Asynchronous jobs against real server processes sharing a real redis-server (no mocks).

`main` serves every model kind on demo weights plus `faulty` (`tests.support.faulty_predictors`: slow,
failing or refusing images marked by their width; one item per batch, so two jobs in flight per process);
`helper` is a second process (image-classification and faulty) on the same Redis, as a second pod would
be. Both use a 3 s visibility timeout, so a killed process's jobs are taken over quickly. `short` runs on
another Redis database with a 3 s result TTL and a backlog of 3 jobs. Redis state is checked with
redis-py; nothing of the server is imported here.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import json
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from predictors_client import (
    AsyncClient,
    Client,
    InvalidImage,
    InvalidInput,
    Job,
    JobCancelled,
    JobNotFound,
    JobsDisabled,
    JobsUnavailable,
)
from predictors_client.results import labels_from

from devtools.redis_server import RedisServer, run_redis
from predictors.models.face_enhancement import demo as face_enhancement
from predictors.models.visual_entailment import demo as visual_entailment
from tests.conftest import encode, sample_image
from tests.integration.test_faults import write_faulty_model
from tests.integration.test_observability import CALLER_SPAN, CALLER_TRACE, OtlpReceiver
from tests.support import faults
from tests.support.server import ServerProcess, run_server

GR, IC, FACE, VE, FAULTY = "general-recognition", "image-classification", "face-enhancement", "visual-entailment", \
    "faulty"
JPEG = encode(sample_image(1, (320, 240)), "JPEG")
FACE_PNG = encode(sample_image(21, (16, 16)), "PNG")  # 16 px: a GPEN pass on a 2-core CPU costs seconds
SLOW_SECONDS = 2.0  # the faulty model's forward pass for FORWARD_SLOW images
#: jobs of the faulty model one process runs at once: the worker takes 3 x max_batch_size (1 for that model)
IN_FLIGHT = 3
VISIBILITY_SECONDS = 3
WAIT = 300.0  # seconds a test waits for jobs on a busy machine
#: each model's inputs (image bytes or text) and parameters
CASES: dict[str, tuple[dict[str, bytes | str], dict[str, Any]]] = {
    GR: ({"image": JPEG}, {"top_k": 3}),
    IC: ({"image": JPEG}, {"top_k": 3}),
    FACE: ({"image": FACE_PNG}, {"output_format": "png"}),
    VE: ({"image": JPEG, "hypothesis": "there is an animal"}, {}),
}


def faulty_image(width: int = faults.HEALTHY_WIDTH, seed: int = 3) -> bytes:
    return encode(sample_image(seed, (width, 96)), "JPEG")


# ---- servers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with run_redis(tmp_path_factory.mktemp("jobs-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def model_dirs(demo_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("jobs-models")
    faulty = write_faulty_model(demo_repository, root / "faulty-repo", slow_forward_seconds=SLOW_SECONDS) / FAULTY
    config = json.loads((faulty / "predictor.json").read_text())
    (faulty / "predictor.json").write_text(json.dumps({**config, "max_batch_size": 1}))
    return {GR: demo_repository / GR, IC: demo_repository / IC,
            FACE: face_enhancement.write(root / "gpen", seed=0),
            VE: visual_entailment.write(root / "ofa", seed=1, patch_image_size=256), FAULTY: faulty}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


def serve_args(model_dirs: dict[str, Path], models: list[str], consumer: str) -> list[str]:
    args = ["--device", "cpu", "--log-format", "json", "--max-batch-size", "4", "--max-latency-ms", "5",
            "--jobs-consumer-name", consumer, "--jobs-max-attempts", "2",
            "--jobs-visibility-timeout-seconds", str(VISIBILITY_SECONDS), "--shutdown-grace-seconds", "10"]
    for name in models:
        args += ["--model-dir", f"{name}={model_dirs[name]}"]
    return args


@pytest.fixture(scope="module")
def pair(redis_server: RedisServer, model_dirs: dict[str, Path], receiver: OtlpReceiver,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """`main` (every model) and `helper` (a second pod: image-classification, faulty), started together."""
    root = tmp_path_factory.mktemp("jobs-servers")
    cache = root / "modelscope-cache"
    cache.mkdir()
    env = {"PREDICTORS_JOBS_REDIS_URL": redis_server.url, "MODELSCOPE_CACHE": str(cache),
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with contextlib.ExitStack() as stack:
        main = stack.enter_context(run_server(serve_args(model_dirs, [GR, IC, FACE, VE, FAULTY], "main"),
                                              root / "main.log", env=env))
        helper = stack.enter_context(run_server(serve_args(model_dirs, [IC, FAULTY], "helper"),
                                                root / "helper.log", env=env))
        main.wait_ready([GR, IC, FACE, VE, FAULTY], timeout=900)
        helper.wait_ready([IC, FAULTY], timeout=900)
        yield main, helper


@pytest.fixture(scope="module")
def main(pair: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return pair[0]


# ---- requests ----------------------------------------------------------------------------------------


def v1_body(inputs: dict[str, bytes | str], parameters: dict[str, Any]) -> bytes:
    instance = {name: {"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v
                for name, v in inputs.items()}
    return json.dumps({"instances": [instance], "parameters": parameters}).encode()


def v2_body(inputs: dict[str, bytes | str], parameters: dict[str, Any]) -> bytes:
    tensors = [{"name": name, "datatype": "BYTES", "shape": [1],
                "data": [base64.b64encode(v).decode() if isinstance(v, bytes) else v]} for name, v in inputs.items()]
    return json.dumps({"inputs": tensors, "parameters": parameters}).encode()


def v2_binary(inputs: dict[str, bytes | str], parameters: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raws = [struct.pack("<I", len(data)) + data
            for data in (v if isinstance(v, bytes) else v.encode() for v in inputs.values())]
    header = json.dumps({"inputs": [{"name": name, "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(raw)}}
                                    for name, raw in zip(inputs, raws, strict=True)],
                         "parameters": parameters}).encode()
    return header + b"".join(raws), {"content-type": "application/octet-stream",
                                     "inference-header-content-length": str(len(header))}


def submit_path(model: str, protocol: str) -> str:
    return f"/v1/models/{model}:submit" if protocol == "v1" else f"/v2/models/{model}/jobs"


def infer_path(model: str, protocol: str) -> str:
    return f"/v1/models/{model}:predict" if protocol == "v1" else f"/v2/models/{model}/infer"


def submit(server: ServerProcess, model: str, body: bytes, protocol: str = "v2",
           headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(server.url + submit_path(model, protocol), content=body, headers=headers or {}, timeout=60)


def submitted(server: ServerProcess, model: str, image: bytes, parameters: dict[str, Any] | None = None,
              **headers: str) -> str:
    response = submit(server, model, v2_body({"image": image}, parameters or {}), headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def job(server: ServerProcess, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/v2/jobs/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for(server: ServerProcess, job_id: str, *, until: frozenset[str] = frozenset(
        {"succeeded", "failed", "cancelled"}), timeout: float = WAIT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        document = job(server, job_id)
        if document["status"] in until:
            return document
        assert time.monotonic() < deadline, f"job {job_id} still {document['status']} after {timeout} s"
        time.sleep(0.05)


def wait_all(server: ServerProcess, job_ids: list[str], timeout: float = WAIT) -> dict[str, dict[str, Any]]:
    return {job_id: wait_for(server, job_id, timeout=timeout) for job_id in job_ids}


def same_answer(got: Any, expected: Any) -> bool:
    """Equal JSON, floats within 1e-5 (a job may share its forward pass with other requests)."""
    if isinstance(expected, float) and isinstance(got, (int, float)):
        return abs(got - expected) <= 1e-5
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(
            same_answer(got[key], expected[key]) for key in expected)
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(
            same_answer(g, e) for g, e in zip(got, expected, strict=True))
    return bool(got == expected)


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(selector)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def poll(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether `condition` holds within `seconds` (asked every 0.1 s)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stream(model: str) -> str:
    return f"predictors:jobs:{model}"


# ---- a job answers like the synchronous route ---------------------------------------------------------


@pytest.mark.parametrize("model", [GR, IC, FACE, VE])
def test_every_model_v1_and_v2_answers_like_the_synchronous_route(main: ServerProcess, model: str) -> None:
    inputs, parameters = CASES[model]
    for protocol, body in (("v1", v1_body(inputs, parameters)), ("v2", v2_body(inputs, parameters))):
        request_id = f"same-{model}-{protocol}"
        headers = {"x-request-id": request_id, "content-type": "application/json"}
        answer = httpx.post(main.url + infer_path(model, protocol), content=body, headers=headers, timeout=WAIT)
        assert answer.status_code == 200, answer.text
        accepted = submit(main, model, body, protocol, headers)
        assert accepted.status_code == 202, accepted.text
        created = accepted.json()
        assert set(created) == {"id", "model", "status", "created_at"}
        assert (created["model"], created["status"]) == (model, "queued")
        assert accepted.headers["location"] == f"/v2/jobs/{created['id']}"
        done = wait_for(main, created["id"])
        assert done["status"] == "succeeded" and done["attempts"] == 1, done
        assert done["created_at"] <= done["started_at"] <= done["finished_at"]
        # strings (labels, a face's base64 image) byte for byte, scores to 1e-5
        assert same_answer(done["result"], answer.json()), (done["result"], answer.json())


def test_a_binary_submission_answers_in_json(main: ServerProcess) -> None:
    inputs, parameters = CASES[GR]
    body, headers = v2_binary(inputs, {**parameters, "binary_data_output": True})
    json_answer = httpx.post(f"{main.url}/v2/models/{GR}/infer", content=v2_body(inputs, parameters),
                             headers={"x-request-id": "binary-1"}, timeout=WAIT)
    accepted = submit(main, GR, body, headers={**headers, "x-request-id": "binary-1"})
    assert accepted.status_code == 202, accepted.text
    done = wait_for(main, accepted.json()["id"])
    assert same_answer(done["result"], json_answer.json())


def test_uploads_are_submitted_like_they_are_predicted(main: ServerProcess) -> None:
    """A v1 multipart body, and a raw image with its parameters in the query string (`codecs.forms`)."""
    form = httpx.Request("POST", main.url, files={"image": ("cat.jpg", JPEG, "image/jpeg")}, data={"top_k": "2"})
    uploads = [(form.read(), {"content-type": form.headers["content-type"]}, ""),
               (JPEG, {"content-type": "image/jpeg"}, "?top_k=4")]
    for index, (body, headers, query) in enumerate(uploads):
        headers = {**headers, "x-request-id": f"upload-{index}"}
        answer = httpx.post(f"{main.url}/v1/models/{GR}:predict{query}", content=body, headers=headers, timeout=WAIT)
        accepted = httpx.post(f"{main.url}/v1/models/{GR}:submit{query}", content=body, headers=headers, timeout=60)
        assert answer.status_code == 200 and accepted.status_code == 202, (answer.text, accepted.text)
        done = wait_for(main, accepted.json()["id"])
        assert same_answer(done["result"], answer.json())
        assert len(done["result"]["predictions"][0]["labels"]) == (2, 4)[index]


# ---- at submission: the synchronous route's 4xx ---------------------------------------------------------


def test_bad_input_is_refused_at_submission(main: ServerProcess, redis_server: RedisServer) -> None:
    backlog = redis_server.client().xlen(stream(GR))
    refused = [
        (submit(main, GR, v2_body({"image": b"not an image"}, {})), 400, "INVALID_IMAGE"),
        (submit(main, GR, v2_body({"picture": JPEG}, {})), 400, "INVALID_INPUT"),
        (submit(main, GR, v2_body({"image": JPEG}, {"top_k": 0})), 400, "INVALID_INPUT"),
        (submit(main, GR, v2_body({"image": JPEG}, {"timeout_ms": "soon"})), 400, "INVALID_INPUT"),
        (submit(main, GR, b"{not json", "v1"), 400, "INVALID_INPUT"),
        (submit(main, GR, v1_body({"image": JPEG}, {}), "v1", {"idempotency-key": "bad key"}), 400,
         "INVALID_INPUT"),
        (submit(main, "no-such-model", v1_body({"image": JPEG}, {}), "v1"), 404, "MODEL_NOT_FOUND"),
    ]
    for response, status, code in refused:
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
        assert response.json()["request_id"] == response.headers["x-request-id"]
    assert redis_server.client().xlen(stream(GR)) == backlog  # nothing was queued


def test_unknown_jobs_are_not_found(main: ServerProcess) -> None:
    for method, job_id in (("GET", "0" * 32), ("GET", "nope"), ("DELETE", "f" * 32)):
        response = httpx.request(method, f"{main.url}/v2/jobs/{job_id}", timeout=30)
        assert (response.status_code, response.json()["code"]) == (404, "JOB_NOT_FOUND")


def test_jobs_disabled_without_redis(server: ServerProcess) -> None:
    for response in (submit(server, IC, v1_body({"image": JPEG}, {}), "v1"),
                     submit(server, IC, v2_body({"image": JPEG}, {})),
                     httpx.get(f"{server.url}/v2/jobs/{'0' * 32}", timeout=30)):
        assert (response.status_code, response.json()["code"]) == (404, "JOBS_DISABLED"), response.text
    with Client(server.url) as client, pytest.raises(JobsDisabled):
        client.submit(IC, {"image": JPEG})


# ---- idempotency, cancellation, failures --------------------------------------------------------------


def test_the_same_idempotency_key_is_the_same_job(main: ServerProcess, redis_server: RedisServer) -> None:
    body = v1_body({"image": JPEG}, {"top_k": 2})
    first = submit(main, IC, body, "v1", {"idempotency-key": "order-1"}).json()
    again = submit(main, IC, body, "v1", {"idempotency-key": "order-1"})
    other = submit(main, IC, body, "v1", {"idempotency-key": "order-2"}).json()
    assert again.status_code == 202 and again.json()["id"] == first["id"] != other["id"]
    assert again.json()["created_at"] == first["created_at"]
    assert redis_server.client().get(f"predictors:idem:{IC}:order-1") == first["id"].encode()
    assert wait_for(main, first["id"])["status"] == "succeeded"
    assert submit(main, IC, body, "v1", {"idempotency-key": "order-1"}).json() == {**first, "status": "succeeded"}


def test_cancel_a_queued_and_a_running_job(main: ServerProcess, redis_server: RedisServer) -> None:
    slow = faulty_image(faults.FORWARD_SLOW)
    # two processes take IN_FLIGHT slow jobs each: the next one waits in the queue
    running = [submitted(main, FAULTY, slow) for _ in range(2 * IN_FLIGHT)]
    queued = submitted(main, FAULTY, slow)
    cancelled = httpx.delete(f"{main.url}/v2/jobs/{queued}", timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] and cancelled.json()["attempts"] == 0
    first = wait_for(main, running[0], until=frozenset({"running"}))
    assert httpx.delete(f"{main.url}/v2/jobs/{first['id']}", timeout=30).json()["status"] == "cancelled"
    outcomes = wait_all(main, running)
    assert outcomes[first["id"]]["status"] == "cancelled" and "result" not in outcomes[first["id"]]
    assert [outcomes[job_id]["status"] for job_id in running[1:]] == ["succeeded"] * (2 * IN_FLIGHT - 1)
    # the queued one was skipped, never run; a cancelled job stays cancelled
    assert wait_for(main, queued)["attempts"] == 0
    assert httpx.delete(f"{main.url}/v2/jobs/{queued}", timeout=30).json()["status"] == "cancelled"
    deadline = time.monotonic() + 30
    while redis_server.client().xlen(stream(FAULTY)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert redis_server.client().xlen(stream(FAULTY)) == 0  # its entry was dropped
    assert metric(main, "predictors_jobs_total", model=FAULTY, status="cancelled") >= 2


def test_a_client_error_while_running_fails_at_once(main: ServerProcess) -> None:
    done = wait_for(main, submitted(main, FAULTY, faulty_image(faults.FINISH_REFUSES)))
    assert (done["status"], done["attempts"]) == ("failed", 1)
    assert done["error"] == {"error": "this picture is refused on purpose", "code": "INVALID_IMAGE"}


def test_a_server_error_is_retried_then_fails_with_the_last_error(
        pair: tuple[ServerProcess, ServerProcess]) -> None:
    def failed() -> float:
        return sum(metric(server, "predictors_jobs_total", model=FAULTY, status="failed") for server in pair)

    before = failed()
    done = wait_for(pair[0], submitted(pair[0], FAULTY, faulty_image(faults.FORWARD_RAISES)))
    assert (done["status"], done["attempts"], done["error"]["code"]) == ("failed", 2, "INTERNAL_ERROR")
    assert "injected" not in done["error"]["error"]  # the cause is logged, not shown
    assert failed() == before + 1


def test_a_job_span_joins_the_submitters_trace(main: ServerProcess, receiver: OtlpReceiver) -> None:
    traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    job_id = submitted(main, IC, JPEG, traceparent=traceparent)
    assert wait_for(main, job_id)["status"] == "succeeded"
    spans = receiver.trace(CALLER_TRACE, count=2)
    (run,) = [span for span in spans if span.name == f"job {IC}"]
    assert run.parent_span_id.hex() == CALLER_SPAN
    children = {span.name for span in spans if span.parent_span_id == run.span_id}
    assert {"preprocess", "queue", "postprocess"} <= children


# ---- the SDK and the CLI -----------------------------------------------------------------------------


def test_sdk_submit_wait_result(main: ServerProcess) -> None:
    with Client(main.url, timeout=WAIT) as client:
        reference = client.classify(JPEG, model=IC, top_k=3)
        queued = client.submit(IC, {"image": JPEG}, {"top_k": 3})
        assert isinstance(queued, Job) and queued.status == "queued" and not queued.done
        assert labels_from(client.result(queued))[0] == reference
        done = client.wait(queued.id)
        assert done.done and done.attempts == 1 and done.result is not None
        with pytest.raises(JobNotFound):
            client.get_job("0" * 32)
        refused = client.submit(FAULTY, {"image": faulty_image(faults.FINISH_REFUSES)})
        with pytest.raises(InvalidImage) as caught:
            client.result(refused)
        assert caught.value.status == 400 and caught.value.request_id == refused.id
        with pytest.raises(InvalidInput):
            client.submit(IC, {"image": JPEG}, {"top_k": 0})
        slow = [client.submit(FAULTY, {"image": faulty_image(faults.FORWARD_SLOW)}) for _ in range(5)]
        assert client.cancel(slow[-1]).status == "cancelled"
        with pytest.raises(JobCancelled):
            client.result(slow[-1])
        with pytest.raises(TimeoutError):
            client.wait(slow[0], timeout=0.2)

    async def asynchronously() -> Any:
        async with AsyncClient(main.url, timeout=WAIT) as client:
            job = await client.submit(IC, {"image": JPEG}, {"top_k": 3}, idempotency_key="async-1")
            same = await client.submit(IC, {"image": JPEG}, {"top_k": 3}, idempotency_key="async-1")
            assert same.id == job.id
            return labels_from(await client.result(job))[0]

    assert asyncio.run(asynchronously()) == reference


def test_cli_async_prints_what_the_synchronous_call_prints(main: ServerProcess, tmp_path: Path) -> None:
    picture = tmp_path / "cat.jpg"
    picture.write_bytes(JPEG)
    command = [sys.executable, "-m", "predictors", "infer", GR, str(picture), "--url", main.url, "--json",
               "--top-k", "3"]
    sync = subprocess.run(command, capture_output=True, text=True, timeout=WAIT)
    queued = subprocess.run([*command, "--async"], capture_output=True, text=True, timeout=WAIT)
    assert sync.returncode == 0 and queued.returncode == 0, queued.stderr
    assert json.loads(queued.stdout)["labels"] == json.loads(sync.stdout)["labels"]
    assert re.search(r"job [0-9a-f]{32} submitted", queued.stderr)
    refused = subprocess.run([sys.executable, "-m", "predictors", "infer", FAULTY,
                              str(_write(tmp_path / "refused.jpg", faulty_image(faults.FINISH_REFUSES))),
                              "--url", main.url, "--async"], capture_output=True, text=True, timeout=WAIT)
    assert refused.returncode == 1 and "INVALID_IMAGE" in refused.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---- two processes, a killed process, a Redis outage ----------------------------------------------------


def test_two_processes_share_the_work_and_each_job_succeeds_once(
        pair: tuple[ServerProcess, ServerProcess], redis_server: RedisServer) -> None:
    main, helper = pair
    images = [encode(sample_image(seed, (64, 48)), "JPEG") for seed in range(4)]
    with Client(main.url) as client:
        expected = [client.classify(image, model=IC, top_k=2) for image in images]

    def succeeded() -> list[float]:
        return [metric(server, "predictors_jobs_total", model=IC, status="succeeded") for server in pair]

    before = succeeded()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: submitted(pair[i % 2], IC, images[i % 4], {"top_k": 2}), range(200)))
    assert len(set(ids)) == 200
    outcomes = wait_all(main, ids)
    for index, job_id in enumerate(ids):
        document = outcomes[job_id]
        assert (document["status"], document["attempts"]) == ("succeeded", 1), document
        assert labels_from_v2(document["result"]) == expected[index % 4].labels
    runners = {redis_server.client().hget(f"predictors:job:{job_id}", "finished_by") for job_id in ids}
    assert runners == {b"main", b"helper"}  # both processes took work
    gained = [after - start for after, start in zip(succeeded(), before, strict=True)]
    assert sum(gained) == 200 and min(gained) > 0  # each job's outcome written once, by one process
    assert redis_server.client().xlen(stream(IC)) == 0


def labels_from_v2(result: dict[str, Any]) -> list[str]:
    (labels,) = [output for output in result["outputs"] if output["name"] == "labels"]
    return list(labels["data"])


def test_redis_outage_loses_no_job_and_spares_synchronous_inference(
        main: ServerProcess, redis_server: RedisServer) -> None:
    slow = faulty_image(faults.FORWARD_SLOW)
    ids = [submitted(main, FAULTY, slow) for _ in range(2 * IN_FLIGHT + 2)]  # two processes run some, two wait
    # the oldest unfinished job's age (the backlog-age alert's signal) grows while they wait
    assert poll(lambda: metric(main, "predictors_jobs_oldest_age_seconds", model=FAULTY) >= 1.0, 10)
    assert metric(main, "predictors_jobs_redis_available", model=FAULTY) == 1
    redis_server.stop()
    try:
        started = time.monotonic()
        refused = submit(main, IC, v2_body({"image": JPEG}, {}))
        assert time.monotonic() - started < 3
        assert (refused.status_code, refused.json()["code"]) == (503, "JOBS_UNAVAILABLE")
        assert int(refused.headers["retry-after"]) > 0
        assert httpx.get(f"{main.url}/v2/jobs/{ids[0]}", timeout=30).json()["code"] == "JOBS_UNAVAILABLE"
        with Client(main.url, retries=0) as client, pytest.raises(JobsUnavailable):
            client.submit(IC, {"image": JPEG})
        sync = httpx.post(f"{main.url}/v2/models/{IC}/infer", content=v2_body({"image": JPEG}, {}), timeout=60)
        assert sync.status_code == 200, sync.text
        assert httpx.get(f"{main.url}/v2/health/ready", timeout=30).status_code == 200
        # the worker's Redis gauge (the Redis-unavailable alert's signal) says so
        assert poll(lambda: metric(main, "predictors_jobs_redis_available", model=FAULTY) == 0, 15)
    finally:
        redis_server.start()  # same port and directory: the append-only file brings the jobs back
    outcomes = wait_all(main, ids)
    assert [outcome["status"] for outcome in outcomes.values()] == ["succeeded"] * len(ids)
    assert poll(lambda: metric(main, "predictors_jobs_redis_available", model=FAULTY) == 1, 15)
    assert poll(lambda: metric(main, "predictors_jobs_oldest_age_seconds", model=FAULTY) == 0, 15)
    logged = [line for line in main.json_log() if "Redis is unavailable" in str(line.get("message"))]
    assert 1 <= len(logged) <= 2  # once per outage (the routes' 503s are not the worker's to log)


def test_a_killed_process_jobs_are_taken_over(pair: tuple[ServerProcess, ServerProcess],
                                              redis_server: RedisServer) -> None:
    """Runs last among the pair's tests: it kills `helper`."""
    main, helper = pair
    redis = redis_server.client()
    ids = [submitted(main, FAULTY, faulty_image(faults.FORWARD_SLOW)) for _ in range(4)]
    deadline = time.monotonic() + 60
    while True:  # until helper is running one of them
        states = [redis.hmget(f"predictors:job:{job_id}", "status", "consumer") for job_id in ids]
        if [b"running", b"helper"] in states:
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.02)
    reclaimed_before = metric(main, "predictors_jobs_reclaimed_total", model=FAULTY)
    helper.process.send_signal(signal.SIGKILL)
    helper.process.wait()
    outcomes = wait_all(main, ids)
    assert [outcome["status"] for outcome in outcomes.values()] == ["succeeded"] * 4
    taken_over = [job_id for job_id in ids if outcomes[job_id]["attempts"] == 2]
    assert taken_over, outcomes
    assert {redis.hget(f"predictors:job:{job_id}", "finished_by") for job_id in taken_over} == {b"main"}
    assert metric(main, "predictors_jobs_reclaimed_total", model=FAULTY) >= reclaimed_before + len(taken_over)
    assert metric(main, "predictors_job_duration_seconds_count", model=FAULTY) > 0


def test_sigterm_finishes_running_jobs_and_takes_no_new_ones(main: ServerProcess, redis_server: RedisServer) -> None:
    """Runs after the kill test (main is the last consumer): it stops `main`."""
    redis = redis_server.client()
    ids = [submitted(main, FAULTY, faulty_image(faults.FORWARD_SLOW)) for _ in range(IN_FLIGHT + 1)]  # one waits
    for job_id in ids[:IN_FLIGHT]:
        wait_for(main, job_id, until=frozenset({"running"}))
    started = time.monotonic()
    assert main.stop() == 0
    assert time.monotonic() - started < SLOW_SECONDS + 8  # the running ones finished, nothing more
    states = [redis.hmget(f"predictors:job:{job_id}", "status", "attempts", "finished_by") for job_id in ids]
    assert states[:IN_FLIGHT] == [[b"succeeded", b"1", b"main"]] * IN_FLIGHT
    assert states[IN_FLIGHT] == [b"queued", b"0", None]  # left in the queue for another server
    assert redis.xlen(stream(FAULTY)) == 1
    assert b"main" not in [consumer["name"] for consumer in redis.xinfo_consumers(stream(FAULTY), "predictors")]


# ---- a short TTL and a small backlog --------------------------------------------------------------------


@pytest.fixture(scope="module")
def short(redis_server: RedisServer, model_dirs: dict[str, Path],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("jobs-short")
    args = [*serve_args(model_dirs, [FAULTY], "short"), "--jobs-result-ttl-seconds", "3", "--jobs-max-backlog", "3"]
    env = {"PREDICTORS_JOBS_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/1"}
    with run_server(args, root / "short.log", env=env, wait_for=[FAULTY], timeout=600) as server:
        yield server


def test_the_backlog_bound_and_expiry(short: ServerProcess) -> None:
    slow = faulty_image(faults.FORWARD_SLOW)
    ids = [submitted(short, FAULTY, slow) for _ in range(3)]  # three unfinished (running or waiting)
    refused = submit(short, FAULTY, v2_body({"image": slow}, {}))
    assert (refused.status_code, refused.json()["code"]) == (503, "SERVICE_BUSY"), refused.text
    assert int(refused.headers["retry-after"]) >= 1
    first = wait_for(short, ids[0])
    assert first["status"] == "succeeded"
    time.sleep(3.5)
    gone = httpx.get(f"{short.url}/v2/jobs/{ids[0]}", timeout=30)
    assert (gone.status_code, gone.json()["code"]) == (404, "JOB_NOT_FOUND")
    # with the backlog drained there is room again
    assert submit(short, FAULTY, v2_body({"image": faulty_image()}, {})).status_code == 202


def test_a_clean_stop_leaves_the_consumer_group(short: ServerProcess, redis_server: RedisServer) -> None:
    redis = redis_server.client(db=1)
    # the consumer exists once it has taken a job (whether or not the test above ran)
    assert wait_for(short, submitted(short, FAULTY, faulty_image()))["status"] == "succeeded"
    assert b"short" in [consumer["name"] for consumer in redis.xinfo_consumers(stream(FAULTY), "predictors")]
    assert short.stop() == 0
    assert redis.xinfo_consumers(stream(FAULTY), "predictors") == []
