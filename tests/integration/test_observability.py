"""Traces (real OTLP/HTTP exporter -> a receiver on loopback), /metrics through promtool, the JSON access
log and `predictors status`, against the real server process."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import encode, sample_image
from tests.support.server import ServerProcess, free_port, run_server

REPO = Path(__file__).resolve().parents[2]
MODEL = "image-classification"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
IMAGE = encode(sample_image(3), "JPEG")


class OtlpReceiver:
    """A minimal OTLP/HTTP trace receiver: keeps every span it is sent, with its resource."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, object], object]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.paths.append(self.path)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend((resource, span) for span in scope_spans.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def trace(self, trace_id: str, count: int, timeout: float = 30.0) -> list[object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = [s for _, s in self.spans if s.trace_id.hex() == trace_id]
            if len(spans) >= count:
                return spans
            time.sleep(0.1)
        return [s for _, s in self.spans if s.trace_id.hex() == trace_id]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _value(value: object) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attributes(span: object) -> dict[str, object]:
    return {a.key: _value(a.value) for a in span.attributes}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def traced_server(demo_repository: Path, receiver: OtlpReceiver,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("observability") / "server.log"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "predictors-under-test",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci",
    }
    with run_server(["--model-repository", str(demo_repository), "--models", MODEL, "--log-format", "json",
                     "--max-latency-ms", "5"], log, env=env, wait_for=[MODEL]) as server:
        yield server


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool, installed by the project script when missing (a clean CI machine has none)."""
    result = subprocess.run([str(REPO / "ci" / "install-promtool.sh")], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def v1_body(count: int = 2) -> dict[str, object]:
    return {"instances": [{"image": {"b64": base64.b64encode(IMAGE).decode()}}] * count}


def test_v1_request_joins_the_callers_trace(traced_server: ServerProcess, receiver: OtlpReceiver) -> None:
    httpx.get(f"{traced_server.url}/v2/health/ready", timeout=10)
    httpx.get(f"{traced_server.url}/metrics", timeout=10)
    response = httpx.post(
        f"{traced_server.url}/v1/models/{MODEL}:predict", json=v1_body(2), timeout=120,
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "tracestate": "vendor=1",
                 "x-request-id": "trace-test-1"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-trace-id"] == CALLER_TRACE
    version, trace_id, server_span_id, flags = response.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CALLER_TRACE, "01")

    spans = receiver.trace(CALLER_TRACE, count=5)
    by_name = {span.name: span for span in spans}
    server_name = "POST /v1/models/{model_name}:predict"
    assert set(by_name) == {server_name, "preprocess", "queue", "predict", "postprocess"}, list(by_name)
    server = by_name[server_name]
    assert server.span_id.hex() == server_span_id
    assert server.parent_span_id.hex() == CALLER_SPAN
    assert server.kind == server.SPAN_KIND_SERVER
    assert server.trace_state == "vendor=1"
    for stage in ("preprocess", "queue", "predict", "postprocess"):
        assert by_name[stage].parent_span_id == server.span_id, stage
    assert [link.span_id for link in by_name["predict"].links] == [server.span_id]
    assert by_name["queue"].end_time_unix_nano <= by_name["predict"].start_time_unix_nano + 1_000_000
    server_attributes = attributes(server)
    assert server_attributes["predictors.model.name"] == MODEL
    assert server_attributes["predictors.protocol"] == "v1"
    assert server_attributes["predictors.device"] == "cpu"
    assert server_attributes["predictors.items"] == 2
    assert server_attributes["predictors.batch.size"] == 2
    assert server_attributes["predictors.request_id"] == "trace-test-1"
    assert server_attributes["http.response.status_code"] == 200
    predict_attributes = attributes(by_name["predict"])
    assert predict_attributes["predictors.batch.size"] == 2
    assert predict_attributes["predictors.device"] == "cpu"
    resource = next(r for r, s in receiver.spans if s.span_id == server.span_id)
    assert resource["service.name"] == "predictors-under-test"
    assert resource["deployment.environment"] == "ci"
    assert set(receiver.paths) == {"/v1/traces"}
    # probes and scrapes are not traced
    traced_paths = {attributes(s).get("url.path") for _, s in receiver.spans}
    assert not traced_paths & {"/v2/health/ready", "/metrics"}


def test_errors_are_traced_with_their_code(traced_server: ServerProcess, receiver: OtlpReceiver) -> None:
    response = httpx.post(f"{traced_server.url}/v1/models/{MODEL}:predict",
                          json={"instances": [{"image": {"b64": "not base64!"}}]}, timeout=60)
    assert response.status_code == 400
    trace_id = response.headers["x-trace-id"]
    server = next(s for s in receiver.trace(trace_id, count=1) if s.kind == s.SPAN_KIND_SERVER)
    assert attributes(server)["predictors.error.code"] == "INVALID_INPUT"
    assert not server.parent_span_id  # no traceparent sent: a new trace


def test_grpc_request_is_traced(traced_server: ServerProcess, receiver: OtlpReceiver) -> None:
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4737"
    client = grpcclient.InferenceServerClient(traced_server.grpc_target)
    tensor = grpcclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([IMAGE], dtype=object))
    client.infer(MODEL, [tensor], headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"})
    spans = receiver.trace(trace_id, count=5)
    server = next(s for s in spans if s.kind == s.SPAN_KIND_SERVER)
    assert server.name == "inference.GRPCInferenceService/ModelInfer"
    assert server.parent_span_id.hex() == CALLER_SPAN
    assert attributes(server)["predictors.protocol"] == "grpc"
    assert attributes(server)["rpc.grpc.status_code"] == "OK"
    assert {s.name for s in spans} >= {"preprocess", "queue", "predict", "postprocess"}


def test_metrics_pass_promtool_after_traffic(traced_server: ServerProcess, promtool: str) -> None:
    for _ in range(3):
        assert httpx.post(f"{traced_server.url}/v1/models/{MODEL}:predict", json=v1_body(3),
                          timeout=120).status_code == 200
    httpx.post(f"{traced_server.url}/v1/models/no-such-model:predict", json=v1_body(1), timeout=60)
    scrape = httpx.get(f"{traced_server.url}/metrics", timeout=10).text
    check = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(scrape) for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("predictors_requests_total", model=MODEL, protocol="v1", code="OK") >= 3
    assert value("predictors_requests_total", model="", protocol="v1", code="MODEL_NOT_FOUND") >= 1
    assert value("predictors_request_duration_seconds_count", model=MODEL, protocol="v1") >= 3
    for stage in ("preprocess", "queue", "predict", "postprocess"):
        assert value("predictors_request_stage_duration_seconds_count", model=MODEL, stage=stage) >= 3, stage
    assert value("predictors_requests_in_flight", model=MODEL) == 0
    assert value("predictors_queue_depth_items", model=MODEL) == 0
    assert value("predictors_batch_size_items_count", model=MODEL) >= 3
    assert value("predictors_items_processed_total", model=MODEL) >= 9
    assert value("predictors_model_ready", model=MODEL) == 1
    assert value("predictors_model_load_seconds", model=MODEL) > 0
    assert value("predictors_model_device_info", model=MODEL, device="cpu") == 1
    assert value("predictors_forward_duration_seconds_count", model=MODEL) >= 3
    # KServe's own stage histograms keep working
    assert value("request_predict_seconds_count", model_name=MODEL) >= 3
    assert value("request_preprocess_seconds_count", model_name=MODEL) >= 3


def test_one_json_access_line_per_request(traced_server: ServerProcess) -> None:
    response = httpx.post(f"{traced_server.url}/v1/models/{MODEL}:predict", json=v1_body(2), timeout=120,
                          headers={"x-request-id": "access-log-1"})
    assert response.status_code == 200
    deadline = time.monotonic() + 10
    lines: list[dict[str, object]] = []
    while not lines and time.monotonic() < deadline:
        lines = [line for line in traced_server.json_log()
                 if line.get("logger") == "predictors.access" and line.get("request_id") == "access-log-1"]
        time.sleep(0.1)
    assert len(lines) == 1
    line = lines[0]
    assert line["trace_id"] == response.headers["x-trace-id"]
    assert (line["model"], line["protocol"], line["status"], line["code"]) == (MODEL, "v1", 200, "OK")
    assert line["batch_size"] == 2 and line["items"] == 2
    assert set(line["latency_ms"]) == {"total", "preprocess", "queue", "predict", "postprocess"}
    assert "time" in line
    access = [line for line in traced_server.json_log() if line.get("logger") == "predictors.access"]
    assert not any(str(line.get("path", "")).startswith(("/v2/health", "/metrics")) for line in access)
    # every log line of the server is JSON with --log-format json
    assert any(line.get("logger") == "predictors.runtime" for line in traced_server.json_log())


def test_status_command(traced_server: ServerProcess) -> None:
    result = subprocess.run([sys.executable, "-m", "predictors", "status", "--url", traced_server.url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith(MODEL))
    assert row.split()[:5] == [MODEL, "yes", "cpu", "fp32", "0/64"]
    as_json = subprocess.run([sys.executable, "-m", "predictors", "status", "--url", traced_server.url,
                              "--json"],
                             capture_output=True, text=True, timeout=120)
    status = json.loads(as_json.stdout)
    assert status["ready"] and status["live"]
    model = status["models"][0]
    assert model["precision"] == {"requested": "fp32", "effective": "fp32", "reason": ""}
    assert model["recent"]["requests"] >= 1 and model["recent"]["p50_ms"] > 0


def test_status_command_reports_an_unreachable_server() -> None:
    result = subprocess.run([sys.executable, "-m", "predictors", "status", "--url",
                             f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "cannot read" in result.stderr
