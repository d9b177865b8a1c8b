"""Start-up, readiness, responsiveness under load, back-pressure and graceful shutdown of the real process."""

from __future__ import annotations

import base64
import concurrent.futures
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from predictors.allocator import JEMALLOC_CONF
from tests.conftest import encode, sample_image
from tests.support.server import free_port, run_server

JPEG = encode(sample_image(5, (256, 256)), "JPEG")


def instances(count: int) -> dict:
    return {"instances": [{"image": {"b64": base64.b64encode(JPEG).decode()}}] * count}


def status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture(scope="module")
def lifecycle_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lifecycle") / "server.log"


def test_live_before_ready_then_ready_after_warmup(demo_repository: Path, lifecycle_log: Path) -> None:
    with run_server(["--model-repository", str(demo_repository), "--models", "general-recognition"],
                    lifecycle_log, wait_for=()) as server:
        observations = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            live = status(f"{server.url}/v2/health/live")
            model_ready = status(f"{server.url}/v2/models/general-recognition/ready")
            v1_ready = status(f"{server.url}/v1/models/general-recognition")
            server_ready = status(f"{server.url}/v2/health/ready")
            observations.append((live, model_ready, v1_ready, server_ready))
            if model_ready == 200:
                break
            time.sleep(0.05)
        assert (200, 503, 503, 503) in observations, observations[:20]
        assert observations[-1] == (200, 200, 200, 200)
        # Nothing is served before the model is ready: the first 200 comes after the warm-up log line.
        assert "ready on cpu" in server.log()
        assert "DEMO weights" in server.log()
        assert "event loop: uvloop" in server.log()  # the default (auto), uvloop being installed
        # The default allocator (auto) is jemalloc, which `make test` installs: the process started itself again
        # with it preloaded, under the same process id (the one kubelet signals) and with our configuration.
        assert "memory allocator: jemalloc" in server.log()
        assert "libjemalloc" in Path(f"/proc/{server.process.pid}/maps").read_text()
        environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
        assert f"MALLOC_CONF={JEMALLOC_CONF}".encode() in environ


def test_event_loop_answers_while_a_slow_batch_runs(demo_repository: Path, tmp_path: Path) -> None:
    """On the standard library's loop and the C library's malloc (the other tests run on the defaults: uvloop,
    jemalloc)."""
    with run_server(["--model-repository", str(demo_repository), "--models", "general-recognition",
                     "--max-batch-size", "8", "--event-loop", "asyncio", "--memory-allocator", "system"],
                    tmp_path / "log", wait_for=["general-recognition"]) as server:
        assert "event loop: asyncio; memory allocator: system" in server.log()
        assert "libjemalloc" not in Path(f"/proc/{server.process.pid}/maps").read_text()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            slow = pool.submit(httpx.post, f"{server.url}/v1/models/general-recognition:predict",
                               json=instances(24), timeout=300)
            latencies = []
            while not slow.done():
                for path in ("/v2/health/live", "/metrics", "/v2/models/general-recognition/ready"):
                    t0 = time.monotonic()
                    assert httpx.get(server.url + path, timeout=5).status_code == 200
                    latencies.append(time.monotonic() - t0)
                time.sleep(0.05)
            response = slow.result()
            elapsed = time.monotonic() - started
        assert response.status_code == 200 and len(response.json()["predictions"]) == 24
        assert elapsed > 1.0, "the batch was too quick to prove anything"
        assert len(latencies) >= 6
        assert max(latencies) < 1.0, f"health checks waited up to {max(latencies):.2f} s during inference"


def test_sigterm_lets_in_flight_requests_finish(demo_repository: Path, tmp_path: Path) -> None:
    with run_server(["--model-repository", str(demo_repository), "--models", "general-recognition",
                     "--shutdown-grace-seconds", "60"], tmp_path / "log",
                    wait_for=["general-recognition"]) as server:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(httpx.post, f"{server.url}/v1/models/general-recognition:predict",
                                    json=instances(16), timeout=300)
            time.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            response = in_flight.result()
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 16
        assert server.process.wait(60) == 0
        assert status(f"{server.url}/v2/health/live") == 0  # no longer accepting


def test_back_pressure_and_deadlines(demo_repository: Path, tmp_path: Path) -> None:
    with run_server(["--model-repository", str(demo_repository), "--models", "image-classification",
                     "--max-queue", "8", "--max-batch-size", "2"], tmp_path / "log",
                    wait_for=["image-classification"]) as server:
        url = f"{server.url}/v1/models/image-classification:predict"
        busy = httpx.post(url, json=instances(9), timeout=60)
        assert busy.status_code == 503 and busy.json()["code"] == "SERVICE_BUSY"
        assert int(busy.headers["retry-after"]) >= 1
        late = httpx.post(url, json=instances(8), headers={"X-Request-Timeout-Ms": "1"}, timeout=60)
        assert late.status_code == 504 and late.json()["code"] == "TIMEOUT"
        body = instances(1) | {"parameters": {"timeout_ms": 30_000}}
        assert httpx.post(url, json=body, timeout=60).status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'predictors_items_processed_total{model="image-classification"}' in metrics
        assert "request_predict_seconds" in metrics  # KServe's own histograms still work


def test_unusable_model_directory_exits_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "predictors", "serve", "--model-dir", f"general-recognition={tmp_path / 'nope'}",
         "--http-port", str(free_port()), "--grpc-port", str(free_port())],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "is not a directory" in result.stderr


def test_a_model_that_fails_to_load_stops_the_server(tmp_path: Path) -> None:
    broken = tmp_path / "general-recognition"
    broken.mkdir()
    (broken / "configuration.json").write_text("{}")
    log = tmp_path / "log"
    with run_server(["--model-dir", f"general-recognition={broken}"], log, wait_for=()) as server:
        assert server.process.wait(120) == 1
    assert "could not be loaded" in log.read_text()


@pytest.mark.parametrize("busy", ["rest", "grpc"])
def test_a_port_in_use_stops_the_server_with_exit_2(demo_repository: Path, busy: str) -> None:
    """uvicorn exits with its own code 3 (ours for a lost device) and a gRPC bind failure would leave REST
    serving alone: both must stop the server at once with the configuration exit code and one clear line."""
    import socket

    http_port, grpc_port = free_port(), free_port()
    with socket.socket(socket.AF_INET6 if busy == "grpc" else socket.AF_INET) as holder:
        holder.bind(("::" if busy == "grpc" else "0.0.0.0", grpc_port if busy == "grpc" else http_port))
        holder.listen()
        result = subprocess.run(
            [sys.executable, "-m", "predictors", "serve", "--model-repository", str(demo_repository),
             "--models", "image-classification", "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
            capture_output=True, text=True, timeout=300,
        )
    assert result.returncode == 2, result.stderr[-3000:]
    transport = "gRPC" if busy == "grpc" else "REST"
    assert f"cannot serve {transport} on port" in result.stderr and "Traceback" not in result.stderr
