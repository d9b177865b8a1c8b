"""Every documented error code, provoked by a real bad request."""

from __future__ import annotations

import base64
import struct
import zlib

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import encode, sample_image

JPEG = encode(sample_image(1, (200, 200)), "JPEG")


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def v1(server, body, model: str = "general-recognition", **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{model}:predict", timeout=60, **({"json": body} | kwargs)
                      if "content" not in kwargs else {"content": kwargs["content"],
                                                       "headers": kwargs.get("headers", {})})


def image_instance(data: bytes) -> dict:
    return {"instances": [{"image": {"b64": base64.b64encode(data).decode()}}]}


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code", "request_id"}
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in body["error"]
    return body


@pytest.mark.parametrize(
    ("data", "code", "status"),
    [
        (b"\xff\xd8\xff\xe0 this is not really a jpeg", "INVALID_IMAGE", 400),
        (JPEG[: len(JPEG) // 2], "INVALID_IMAGE", 400),
        (b"GIF89a" + b"\0" * 64, "INVALID_IMAGE", 400),
        (bomb_png(), "IMAGE_TOO_LARGE", 413),
        (bomb_png(8000, 6000), "IMAGE_TOO_LARGE", 413),
    ],
    ids=["corrupt-jpeg", "truncated-jpeg", "gif", "bomb-100000x100000", "48-megapixels"],
)
def test_bad_images(server, data: bytes, code: str, status: int) -> None:
    assert_error(v1(server, image_instance(data)), status, code)


@pytest.mark.parametrize(
    "body",
    [
        {"instances": []},
        {"instances": [{"picture": {"b64": "AAAA"}}]},
        {"instances": [{"image": {"b64": "not base64!!"}}]},
        {"instances": [{"image": 12}]},
        {"inputs": []},
        {"instances": [{"image": {"b64": base64.b64encode(JPEG).decode()}}], "parameters": {"top_k": 0}},
        {"instances": [{"image": {"b64": base64.b64encode(JPEG).decode()}}], "parameters": {"colour": "red"}},
    ],
    ids=["empty", "unknown-field", "bad-base64", "wrong-type", "v2-body-on-v1", "top-k-0", "unknown-parameter"],
)
def test_bad_v1_requests(server, body: dict) -> None:
    assert_error(v1(server, body), 400, "INVALID_INPUT")


def test_malformed_json(server) -> None:
    assert_error(v1(server, None, content=b"{not json", headers={"content-type": "application/json"}),
                 400, "INVALID_INPUT")
    response = httpx.post(f"{server.url}/v2/models/general-recognition/infer", content=b"{not json",
                          headers={"content-type": "application/json"}, timeout=30)
    assert_error(response, 400, "INVALID_INPUT")


def test_too_many_items(server) -> None:
    body = {"instances": [{"image": {"b64": "AAAA"}}] * 65}
    assert "limit is 64" in assert_error(v1(server, body), 400, "INVALID_INPUT")["error"]


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        ({"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}, "datatype BYTES"),
        ({"name": "image", "datatype": "BYTES", "shape": [2], "data": ["AAAA"]}, "shape"),
        ({"name": "image", "datatype": "BYTES", "shape": [1, 1], "data": ["AAAA"]}, "shape [N]"),
        ({"name": "photo", "datatype": "BYTES", "shape": [1], "data": ["AAAA"]}, "unknown input"),
    ],
    ids=["wrong-datatype", "shape-mismatch", "2d-shape", "wrong-name"],
)
def test_bad_v2_tensors(server, tensor: dict, fragment: str) -> None:
    response = httpx.post(f"{server.url}/v2/models/general-recognition/infer", json={"inputs": [tensor]}, timeout=30)
    assert fragment in assert_error(response, 400, "INVALID_INPUT")["error"]


def test_missing_v2_input(server) -> None:
    response = httpx.post(f"{server.url}/v2/models/general-recognition/infer", json={"inputs": []}, timeout=30)
    assert "missing input 'image'" in assert_error(response, 400, "INVALID_INPUT")["error"]


def test_oversize_body(server) -> None:
    response = httpx.post(f"{server.url}/v1/models/general-recognition:predict",
                          content=b"{" + b" " * (21 * 1024 * 1024) + b"}",
                          headers={"content-type": "application/json"}, timeout=60)
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_oversize_chunked_body(server) -> None:
    def chunks():
        for _ in range(22):
            yield b" " * (1024 * 1024)

    response = httpx.post(f"{server.url}/v1/models/general-recognition:predict", content=chunks(),
                          headers={"content-type": "application/json"}, timeout=60)
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_unknown_model(server) -> None:
    assert_error(v1(server, image_instance(JPEG), model="no-such-model"), 404, "MODEL_NOT_FOUND")
    response = httpx.post(f"{server.url}/v2/models/no-such-model/infer",
                          json={"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["AA=="]}]})
    assert_error(response, 404, "MODEL_NOT_FOUND")
    assert_error(httpx.get(f"{server.url}/v2/models/no-such-model/ready"), 404, "MODEL_NOT_FOUND")


@pytest.mark.parametrize("route", ["/v1/models/no-such-model:predict", "/v2/models/no-such-model/infer"])
@pytest.mark.parametrize("body", [b"{not json", b'{"inputs": "wrong shape"}', b""])
def test_unknown_model_is_404_whatever_the_body(server, route: str, body: bytes) -> None:
    # The model is looked up before the body is parsed: a bad body for a model that is not served is
    # still the 404 that tells the caller what is wrong.
    response = httpx.post(f"{server.url}{route}", content=body, headers={"content-type": "application/json"})
    assert_error(response, 404, "MODEL_NOT_FOUND")


def test_tritonclient_sees_the_error_message(server) -> None:
    http = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = httpclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"garbage"], dtype=object), binary_data=True)
    with pytest.raises(InferenceServerException, match="not a decodable image"):
        http.infer("general-recognition", [tensor])


@pytest.mark.parametrize(
    ("model", "data", "status", "code"),
    [
        ("general-recognition", b"garbage", "StatusCode.INVALID_ARGUMENT", "INVALID_IMAGE"),
        ("general-recognition", bomb_png(), "StatusCode.INVALID_ARGUMENT", "IMAGE_TOO_LARGE"),
        ("no-such-model", JPEG, "StatusCode.NOT_FOUND", "MODEL_NOT_FOUND"),
    ],
)
def test_grpc_errors(server, model: str, data: bytes, status: str, code: str) -> None:
    grpc = grpcclient.InferenceServerClient(server.grpc_target)
    tensor = grpcclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([data], dtype=object))
    with pytest.raises(InferenceServerException) as error:
        grpc.infer(model, [tensor], headers={"x-request-id": "grpc-42"})
    assert error.value.status() == status
    assert f"[{code}]" in error.value.message() and "request_id=grpc-42" in error.value.message()


def test_unknown_route_uses_the_error_body(server) -> None:
    assert_error(httpx.get(f"{server.url}/v2/nothing-here"), 404, "NOT_FOUND")
