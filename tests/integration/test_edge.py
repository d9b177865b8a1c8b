"""The edge against clients nobody planned for: content types, body limits on both transports, clients that
hang up, framework errors, typed parameters and request ids."""

from __future__ import annotations

import base64
import json
import re
import socket
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.conftest import encode, sample_image
from tests.integration.test_errors import assert_error

JPEG = encode(sample_image(1, (200, 200)), "JPEG")
B64 = base64.b64encode(JPEG).decode()
V1_BODY = json.dumps({"instances": [{"image": {"b64": B64}}], "parameters": {"top_k": 3}})
LIMIT = 20 * 1024 * 1024  # the server's default max_body_bytes


def metric(server, name: str, **labels: str) -> float:
    """One sample of the server's /metrics (0 when the series does not exist yet)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_v1_json_body_is_json_whatever_its_content_type(server, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(f"{server.url}/v1/models/general-recognition:predict", content=V1_BODY.encode(),
                          headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"][0]["labels"]) == 3


def test_curl_d_as_the_readme_and_kserve_docs_send_it(server) -> None:
    """`curl -d` sends application/x-www-form-urlencoded; `-d @file` too."""
    import subprocess

    result = subprocess.run(["curl", "-s", f"{server.url}/v1/models/general-recognition:predict", "-d", V1_BODY],
                            capture_output=True, text=True, timeout=60, check=True)
    assert len(json.loads(result.stdout)["predictions"][0]["labels"]) == 3


def test_a_body_that_is_not_json_is_invalid_input(server) -> None:
    response = httpx.post(f"{server.url}/v1/models/general-recognition:predict", content=b"instances=1",
                          headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    assert "not valid JSON" in assert_error(response, 400, "INVALID_INPUT")["error"]


@pytest.mark.parametrize("route", ["/v1/models/general-recognition:predict",
                                   "/v2/models/general-recognition/infer"])
def test_a_chunked_body_over_the_limit_is_413_on_every_route(server, route: str) -> None:
    def chunks():
        for _ in range(22):
            yield b" " * (1024 * 1024)

    response = httpx.post(f"{server.url}{route}", content=chunks(), headers={"content-type": "application/json"},
                          timeout=60)
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert "Traceback" not in server.log()


def test_grpc_has_the_same_body_limit_as_rest(server) -> None:
    grpc = grpcclient.InferenceServerClient(server.grpc_target)
    tensor = grpcclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([JPEG + b"\0" * (LIMIT + 1024)], dtype=object))
    with pytest.raises(InferenceServerException) as error:
        grpc.infer("general-recognition", [tensor], headers={"x-request-id": "big-1"})
    assert error.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "[PAYLOAD_TOO_LARGE]" in error.value.message() and "request_id=big-1" in error.value.message()
    # just under the limit is read and decoded like any other message (trailing bytes after the JPEG are ignored)
    tensor.set_data_from_numpy(np.array([JPEG + b"\0" * (LIMIT - len(JPEG) - 4096)], dtype=object))
    assert grpc.infer("general-recognition", [tensor]).as_numpy("labels").shape == (1, 5)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v2/nothing-here", 404, "NOT_FOUND"),
        ("GET", "/v2/models/general-recognition/infer/extra", 404, "NOT_FOUND"),
        ("DELETE", "/v2/health/live", 405, "METHOD_NOT_ALLOWED"),
        ("PUT", "/v2/models/general-recognition/infer", 405, "METHOD_NOT_ALLOWED"),
        # a v1 model name ends at ':' (docs/protocol.md, "Routes and RPCs"): no route has the verb ':nope' ...
        ("POST", "/v1/models/general-recognition:nope", 404, "NOT_FOUND"),
        # ... and ':predict' is the predict route, which takes POST only
        ("GET", "/v1/models/general-recognition:predict", 405, "METHOD_NOT_ALLOWED"),
        ("POST", "/v2/models/general-recognition/versions/1/infer", 404, "MODEL_NOT_FOUND"),
    ],
)
def test_framework_errors_use_documented_codes(server, method: str, path: str, status: int, code: str) -> None:
    response = httpx.request(method, f"{server.url}{path}", content=b"{}", timeout=30)
    assert_error(response, status, code)


@pytest.mark.parametrize(
    "parameters",
    [{"top_k": True}, {"top_k": "3"}, {"top_k": 3.0}, {"top_k": None}, {"timeout_ms": True},
     {"timeout_ms": "1000"}, {"timeout_ms": -5}],
    ids=["bool", "string", "float", "null", "timeout-bool", "timeout-string", "timeout-negative"],
)
def test_parameters_are_strictly_typed(server, parameters: dict) -> None:
    body = {"instances": [{"image": {"b64": B64}}], "parameters": parameters}
    response = httpx.post(f"{server.url}/v1/models/general-recognition:predict", json=body, timeout=30)
    assert_error(response, 400, "INVALID_INPUT")
    v2 = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [B64]}], "parameters": parameters}
    assert_error(httpx.post(f"{server.url}/v2/models/general-recognition/infer", json=v2, timeout=30),
                 400, "INVALID_INPUT")


def test_a_timeout_header_is_a_number_of_milliseconds(server) -> None:
    url = f"{server.url}/v1/models/general-recognition:predict"
    assert_error(httpx.post(url, content=V1_BODY, headers={"x-request-timeout-ms": "soon"}, timeout=30),
                 400, "INVALID_INPUT")
    assert httpx.post(url, content=V1_BODY, headers={"x-request-timeout-ms": "60000"}, timeout=60).status_code == 200


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-DEF_1.2", True), ("a" * 128, True), ("a" * 129, False), ("with space", False),
     ('quote"d', False), ("semi;colon", False), ("ünïcode", False)],
)
def test_request_ids_are_bounded_and_inert(server, sent: str, kept: bool) -> None:
    response = httpx.post(f"{server.url}/v1/models/general-recognition:predict", content=b"[]",
                          headers={"x-request-id": sent.encode()}, timeout=30)
    echoed = response.headers["x-request-id"]
    assert response.json()["request_id"] == echoed
    if kept:
        assert echoed == sent
    else:
        assert echoed != sent and re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_a_request_id_cannot_forge_log_lines(server) -> None:
    """A raw CR/LF cannot reach a header value, but an encoded one in a text log could start a fake line."""
    forged = "x\\nINFO fake line"
    httpx.post(f"{server.url}/v1/models/general-recognition:predict", content=b"[]",
               headers={"x-request-id": forged}, timeout=30)
    assert forged not in server.log()


def _half_sent_request(port: int, path: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100000\r\n\r\n".encode() + b'{"instances": [')


def test_clients_that_hang_up_while_sending_are_not_server_errors(server) -> None:
    before = {code: metric(server, "predictors_requests_total", model="general-recognition", protocol="v1",
                           code=code) for code in ("CLIENT_CLOSED", "INTERNAL_ERROR")}
    for _ in range(40):
        _half_sent_request(server.http_port, "/v1/models/general-recognition:predict")
    deadline = time.monotonic() + 20
    closed = 0.0
    while time.monotonic() < deadline:
        closed = metric(server, "predictors_requests_total", model="general-recognition", protocol="v1",
                        code="CLIENT_CLOSED") - before["CLIENT_CLOSED"]
        if closed >= 40:
            break
        time.sleep(0.2)
    assert closed == 40
    assert metric(server, "predictors_requests_total", model="general-recognition", protocol="v1",
                  code="INTERNAL_ERROR") == before["INTERNAL_ERROR"]
    assert "Traceback" not in server.log()
    access = [json.loads(line) for line in server.log().splitlines()
              if line.startswith("{") and '"CLIENT_CLOSED"' in line]
    assert len(access) >= 40 and all(entry["status"] == 499 for entry in access)
    assert not re.search(r" (ERROR|CRITICAL) .*client closed", server.log())


def test_a_client_that_hangs_up_mid_request_has_its_queued_items_dropped(server) -> None:
    """32 images, batches of at most 8 taking ~1-2 s each here: hanging up after the first batch started
    must leave most of them unrun."""
    def processed() -> float:
        return metric(server, "predictors_items_processed_total", model="general-recognition")

    before = processed()
    body = json.dumps({"instances": [{"image": {"b64": B64}}] * 32}).encode()
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/general-recognition:predict HTTP/1.1\r\nHost: test\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.monotonic() + 30
        while processed() == before and time.monotonic() < deadline:
            time.sleep(0.05)
    time.sleep(8)  # long enough for every remaining batch to have run, had it been kept
    assert 0 < processed() - before < 32
    assert metric(server, "predictors_queue_depth_items", model="general-recognition") == 0
    assert metric(server, "predictors_requests_in_flight", model="general-recognition") == 0
    assert "Traceback" not in server.log()


def test_a_grpc_client_that_gives_up_is_client_closed(server) -> None:
    def closed() -> float:
        return metric(server, "predictors_requests_total", model="general-recognition", protocol="grpc",
                      code="CLIENT_CLOSED")

    before = closed()
    grpc = grpcclient.InferenceServerClient(server.grpc_target)
    tensor = grpcclient.InferInput("image", [16], "BYTES")
    tensor.set_data_from_numpy(np.array([JPEG] * 16, dtype=object))
    with pytest.raises(InferenceServerException) as error:
        grpc.infer("general-recognition", [tensor], client_timeout=0.5)
    assert error.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    deadline = time.monotonic() + 30
    while closed() == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert closed() == before + 1
    assert metric(server, "predictors_requests_total", model="general-recognition", protocol="grpc",
                  code="INTERNAL_ERROR") == 0
    assert metric(server, "predictors_requests_in_flight", model="general-recognition") == 0
    assert "Traceback" not in server.log()
