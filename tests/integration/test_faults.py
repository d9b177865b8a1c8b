"""Faults injected into a real server process: poison items, failing prepare/finish, slow forward passes,
SIGTERM while loading, corrupt model directories.

The faulty model is `tests.support.faulty_predictors.FaultyClassifier` (the demo classifier that fails on
marked images), served through predictor.json like any custom predictor; this process only talks to
the server over HTTP and gRPC.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.conftest import encode, sample_image
from tests.support import faults
from tests.support.server import ServerProcess, free_port, run_server

MODEL = "faulty"
SLOW_FORWARD_SECONDS = 3.0


def image(width: int = faults.HEALTHY_WIDTH, seed: int = 3) -> bytes:
    """A JPEG `width` pixels wide: a fault marker of `tests.support.faults` or a healthy picture."""
    return encode(sample_image(seed, (width, 96)), "JPEG")


HEALTHY = [image(seed=seed) for seed in range(10, 17)]  # seven different healthy pictures


def write_faulty_model(demo_repository: Path, root: Path, **options: Any) -> Path:
    """The demo classifier's directory, served by `FaultyClassifier` with `options`."""
    directory = root / MODEL
    shutil.copytree(demo_repository / "image-classification", directory)
    (directory / "predictor.json").write_text(json.dumps(
        {"predictor": faults.FAULTY_PREDICTOR, "demo_weights": True, "options": options}))
    return root


@pytest.fixture(scope="module")
def faulty_server(demo_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("faulty")
    repository = write_faulty_model(demo_repository, root / "repo", slow_forward_seconds=SLOW_FORWARD_SECONDS)
    with run_server(["--model-repository", str(repository), "--max-batch-size", "8", "--max-latency-ms", "1000",
                     "--log-format", "json"], root / "server.log", wait_for=[MODEL]) as server:
        yield server


# ---- clients ------------------------------------------------------------------------------------

def v1(server: ServerProcess, images: list[bytes], request_id: str, **parameters: Any) -> tuple[int, dict]:
    body: dict[str, Any] = {"instances": [{"image": {"b64": base64.b64encode(i).decode()}} for i in images]}
    if parameters:
        body["parameters"] = parameters
    response = httpx.post(f"{server.url}/v1/models/{MODEL}:predict", json=body, timeout=120,
                          headers={"x-request-id": request_id})
    body = response.json()
    return response.status_code, {"labels": [p["labels"] for p in body["predictions"]]} if "predictions" in body \
        else body


def v2(server: ServerProcess, images: list[bytes], request_id: str, **parameters: Any) -> tuple[int, dict]:
    body: dict[str, Any] = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                                        "data": [base64.b64encode(i).decode() for i in images]}]}
    if parameters:
        body["parameters"] = parameters
    response = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json=body, timeout=120,
                          headers={"x-request-id": request_id})
    body = response.json()
    if response.status_code != 200:
        return response.status_code, body
    labels = next(o for o in body["outputs"] if o["name"] == "labels")
    return 200, {"labels": np.array(labels["data"]).reshape(labels["shape"]).tolist()}


def grpc(server: ServerProcess, images: list[bytes], request_id: str, **parameters: Any) -> tuple[int, dict]:
    client = grpcclient.InferenceServerClient(server.grpc_target)
    tensor = grpcclient.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object))
    try:
        result = client.infer(MODEL, [tensor], parameters=parameters or None, headers={"x-request-id": request_id})
    except InferenceServerException as error:
        match = re.match(r"\[(\w+)\] (.*) \(request_id=(.*)\)$", error.message() or "")
        assert match, error.message()
        status = {"StatusCode.INTERNAL": 500, "StatusCode.INVALID_ARGUMENT": 400,
                  "StatusCode.DEADLINE_EXCEEDED": 504}[str(error.status())]
        return status, {"code": match[1], "error": match[2], "request_id": match[3]}
    finally:
        client.close()
    return 200, {"labels": [[label.decode() for label in row] for row in result.as_numpy("labels")]}


PROTOCOLS: dict[str, Callable[..., tuple[int, dict]]] = {"v1": v1, "v2": v2, "grpc": grpc}


# ---- what the server reports --------------------------------------------------------------------

def wait_for_log(server: ServerProcess, predicate: Callable[[dict[str, Any]], bool], count: int,
                 timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in server.json_log() if predicate(line)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def metric(server: ServerProcess, name: str, labels: str = f'model="{MODEL}"') -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def errors_logged(server: ServerProcess) -> list[dict[str, Any]]:
    return [line for line in server.json_log() if line.get("level") in ("ERROR", "CRITICAL")]


def occupy_the_device(server: ServerProcess, pool: concurrent.futures.Executor,
                      run_id: str) -> concurrent.futures.Future[Any]:
    """A request whose forward pass takes SLOW_FORWARD_SECONDS: requests sent meanwhile queue up and
    leave together in the next batch."""
    batches = metric(server, "predictors_batch_size_items_count")
    slow = pool.submit(v1, server, [image(faults.FORWARD_SLOW)], f"{run_id}-slow")
    deadline = time.monotonic() + 10
    while metric(server, "predictors_batch_size_items_count") < batches + 1:
        assert time.monotonic() < deadline, "the slow request never reached the device"
        time.sleep(0.05)
    return slow


# ---- poison items -------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["v1", "v2", "grpc"])
def test_a_poison_item_fails_only_its_own_request(faulty_server: ServerProcess, protocol: str) -> None:
    call = PROTOCOLS[protocol]
    expected = [call(faulty_server, [picture], f"{protocol}-alone-{i}") for i, picture in enumerate(HEALTHY)]
    assert all(status == 200 for status, _ in expected), expected
    poison_before = metric(faulty_server, "predictors_poison_items_total")
    errors_before = len(errors_logged(faulty_server))
    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        slow = occupy_the_device(faulty_server, pool, protocol)
        pictures = [*HEALTHY[:3], image(faults.FORWARD_RAISES), *HEALTHY[3:]]
        ids = [f"{protocol}-poison-batch-{i}" for i in range(8)]
        sent = [pool.submit(call, faulty_server, [picture], request_id)
                for picture, request_id in zip(pictures, ids, strict=True)]
        answers = [request.result() for request in sent]
        assert slow.result()[0] == 200

    poisoned_id = ids[3]
    status, body = answers[3]
    assert status == 500 and body["code"] == "INTERNAL_ERROR", body
    assert body["request_id"] == poisoned_id
    assert "Traceback" not in body["error"] and "injected" not in body["error"]
    healthy_answers = answers[:3] + answers[4:]
    assert healthy_answers == expected, "the poison item's batch-mates did not get their own answers"

    # They really shared one forward pass: each request's access-log line says batch_size 8.
    access = wait_for_log(faulty_server, lambda line: line.get("logger") == "predictors.access"
                          and line.get("request_id") in ids, count=8)
    assert sorted(line["request_id"] for line in access) == sorted(ids)
    assert {line["batch_size"] for line in access} == {8}
    assert metric(faulty_server, "predictors_poison_items_total") == poison_before + 1

    new_errors = errors_logged(faulty_server)[errors_before:]
    assert len(new_errors) == 1, new_errors
    assert new_errors[0]["request_id"] == poisoned_id
    assert "InjectedFault: injected fault in forward (a batch of 1)" in new_errors[0]["exception"]


# ---- prepare / finish raising for one item of a multi-item request ------------------------------

@pytest.mark.parametrize(
    ("marker", "status", "code"),
    [(faults.PREPARE_RAISES, 500, "INTERNAL_ERROR"), (faults.FINISH_RAISES, 500, "INTERNAL_ERROR"),
     (faults.FINISH_REFUSES, 400, "INVALID_IMAGE")],
    ids=["prepare-raises", "finish-raises", "finish-refuses"],
)
def test_a_failing_step_fails_only_the_request_that_owns_the_item(faulty_server: ServerProcess, marker: int,
                                                                   status: int, code: str) -> None:
    expected = v1(faulty_server, HEALTHY[:2], f"step-{marker}-alone")
    assert expected[0] == 200
    errors_before = len(errors_logged(faulty_server))
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        doomed = pool.submit(v1, faulty_server, [HEALTHY[0], image(marker), HEALTHY[1]], f"step-{marker}-doomed")
        others = [pool.submit(v1, faulty_server, HEALTHY[:2], f"step-{marker}-other-{i}") for i in range(5)]
        doomed_status, body = doomed.result()
        assert [other.result() for other in others] == [expected] * 5
    assert doomed_status == status and body["code"] == code, body
    assert set(body) == {"error", "code", "request_id"} and body["request_id"] == f"step-{marker}-doomed"
    assert "Traceback" not in body["error"]
    # the server still answers the same request without the faulty item
    assert v1(faulty_server, HEALTHY[:2], f"step-{marker}-after") == expected
    new_errors = errors_logged(faulty_server)[errors_before:]
    if status == 500:  # logged once, with its stack trace; a client's error is not a server error
        assert [line["request_id"] for line in new_errors] == [f"step-{marker}-doomed"]
        assert "InjectedFault" in new_errors[0]["exception"]
    else:
        assert new_errors == []


# ---- a forward pass slower than the request's deadline ------------------------------------------

def test_a_forward_pass_past_the_deadline_answers_504_and_the_server_recovers(
        faulty_server: ServerProcess) -> None:
    for call in (v1, grpc):
        started = time.monotonic()
        status, body = call(faulty_server, [image(faults.FORWARD_SLOW)], f"deadline-{call.__name__}",
                            timeout_ms=500)
        elapsed = time.monotonic() - started
        assert (status, body["code"]) == (504, "TIMEOUT"), body
        assert elapsed < SLOW_FORWARD_SECONDS, f"the timeout came after {elapsed:.1f} s"
    # a request queued behind the slow pass, past its deadline too, is dropped, never run
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = occupy_the_device(faulty_server, pool, "deadline")
        queued = v2(faulty_server, [HEALTHY[0]], "deadline-queued", timeout_ms=300)
        assert (queued[0], queued[1]["code"]) == (504, "TIMEOUT")
        assert slow.result()[0] == 200
    assert v1(faulty_server, [HEALTHY[0]], "deadline-after")[0] == 200
    deadline = time.monotonic() + 15
    gauges = None
    while time.monotonic() < deadline:
        gauges = (metric(faulty_server, "predictors_requests_in_flight"),
                  metric(faulty_server, "predictors_queue_depth_items"))
        if gauges == (0.0, 0.0):
            break
        time.sleep(0.2)
    assert gauges == (0.0, 0.0), f"in flight, queued: {gauges}"
    # a timeout is the request's deadline, not a server error
    assert not [line for line in errors_logged(faulty_server) if str(line["request_id"]).startswith("deadline")]


# ---- lifecycle faults ---------------------------------------------------------------------------

def sigterm_and_wait(server: ServerProcess, wait_seconds: float) -> tuple[int, float]:
    """SIGTERM the server; its exit code and how long it took to exit (fails if it outlives `wait_seconds`)."""
    server.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        code = server.process.wait(wait_seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {wait_seconds} s after SIGTERM:\n{server.log()[-3000:]}")
    return code, time.monotonic() - started


def test_sigterm_while_a_model_is_still_loading_exits_within_the_grace_period(
        demo_repository: Path, tmp_path: Path) -> None:
    repository = write_faulty_model(demo_repository, tmp_path / "repo", load_seconds=300)
    log = tmp_path / "server.log"
    with run_server(["--model-repository", str(repository), "--shutdown-grace-seconds", "5"], log,
                    wait_for=()) as server:
        deadline = time.monotonic() + 120
        while f"model {MODEL}: loading" not in server.log():
            assert server.process.poll() is None, server.log()
            assert time.monotonic() < deadline, "the model never started loading"
            time.sleep(0.1)
        assert httpx.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200
        assert httpx.get(f"{server.url}/v2/models/{MODEL}/ready", timeout=5).status_code == 503
        code, took = sigterm_and_wait(server, wait_seconds=15)
        assert took < 10
    assert code == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_sigterm_during_a_forward_pass_longer_than_the_grace_period_still_exits(
        demo_repository: Path, tmp_path: Path) -> None:
    # A forward pass cannot be interrupted; the process must not wait for it past the drain (Kubernetes
    # would SIGKILL it at terminationGracePeriodSeconds, and the pod would sit Terminating until then).
    repository = write_faulty_model(demo_repository, tmp_path / "repo", slow_forward_seconds=120)
    log = tmp_path / "server.log"
    with run_server(["--model-repository", str(repository), "--shutdown-grace-seconds", "2",
                     "--log-format", "json"], log, wait_for=[MODEL]) as server, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = occupy_the_device(server, pool, "sigterm")
        code, took = sigterm_and_wait(server, wait_seconds=30)
        with contextlib.suppress(Exception):
            slow.result(timeout=5)  # the abandoned request's connection is closed; any outcome
    assert took < 15, f"exit took {took:.1f} s"
    assert code == 0, log.read_text()[-3000:]
    assert "a forward pass was still running" in log.read_text()


def truncate_weights(directory: Path) -> str:
    weights = directory / "pytorch_model.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return "pytorch_model.pt: cannot be read (RuntimeError: PytorchStreamReader failed reading zip archive"


def configuration_not_json(directory: Path) -> str:
    (directory / "configuration.json").write_text('{"task": "visual-entailment",')
    return "configuration.json: cannot be read (JSONDecodeError: "


def configuration_with_the_wrong_task(directory: Path) -> str:
    (directory / "configuration.json").write_text(json.dumps({"task": "image-captioning", "model": {"type": "ofa"}}))
    return "configuration.json: has task 'image-captioning'; expected 'visual-entailment'"


@pytest.mark.parametrize(
    ("model", "damage"),
    [("general-recognition", truncate_weights), ("visual-entailment", configuration_not_json),
     ("visual-entailment", configuration_with_the_wrong_task)],
    ids=["truncated-weights", "configuration-not-json", "configuration-wrong-task"],
)
def test_a_corrupt_model_directory_exits_1_with_one_line_naming_the_file(
        demo_repository: Path, tmp_path: Path, model: str, damage: Callable[[Path], str]) -> None:
    directory = tmp_path / model
    if model == "general-recognition":
        shutil.copytree(demo_repository / model, directory)
    else:
        directory.mkdir()
    expected = damage(directory)
    log = tmp_path / "server.log"
    with run_server(["--model-dir", f"{model}={directory}"], log, wait_for=()) as server:
        assert server.process.wait(180) == 1
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    failures = [line for line in text.splitlines() if re.search(r" (ERROR|CRITICAL) ", line)]
    assert len(failures) == 1, text[-3000:]
    assert "could not be loaded" in failures[0]
    assert f"{directory}/{expected}" in failures[0], failures[0]


def test_a_custom_predictor_that_is_not_a_predictor_stops_start_up_with_exit_2(tmp_path: Path) -> None:
    directory = tmp_path / "custom"
    directory.mkdir()
    (directory / "predictor.json").write_text(json.dumps({"predictor": "tests.support.faults:FORWARD_RAISES"}))
    result = subprocess.run(
        [sys.executable, "-m", "predictors", "serve", "--model-dir", f"custom={directory}",
         "--http-port", str(free_port()), "--grpc-port", str(free_port())],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "model 'custom'" in result.stderr and "is not a subclass" in result.stderr
    assert "Traceback" not in result.stderr
