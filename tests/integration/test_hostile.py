"""The hostile corpus against the real server serving every demo model.

The server serves all four demo models, so ModelScope's OFA module has flipped Pillow's process-wide
``LOAD_TRUNCATED_IMAGES`` before any of these requests arrive. Every case states its documented answer
(status and code from the error table (docs/errors.md), or 200 for an unusual but valid image, whose answer must
equal that of the same pixels sent as a plain RGB PNG). The last test checks the aftermath: the process is
alive and ready, answers the reference image as it did before, its in-flight and queue gauges are 0, no
request counted as INTERNAL_ERROR and the log holds no traceback.

Face enhancement costs one 512 px GPEN pass per face here: it gets broken inputs (refused before any
forward pass) and a single small valid image.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.conftest import encode, sample_image
from tests.integration import hostile_corpus as corpus
from tests.integration.test_documented_codes import documented_codes
from tests.integration.test_edge import metric
from tests.integration.test_errors import assert_error
from tests.support.server import ServerProcess, run_server

MODELS = ("general-recognition", "image-classification", "face-enhancement", "visual-entailment")
CHEAP = "image-classification"
#: the model whose answers are compared: its random 54 092-class head tells images apart (the demo
#: classifier's ten near-uniform scores would not)
JUDGE = "general-recognition"
ENTAILMENT = "visual-entailment"
REFERENCE = encode(sample_image(11, (96, 80)), "JPEG")
LIMIT = 20 * 1024 * 1024  # the server's default max_body_bytes
SEEN_CODES: set[str] = set()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("hostile")
    repository = root / "demo-models"
    env = {"MODELSCOPE_CACHE": str(root / "modelscope-cache")}
    subprocess.run([sys.executable, "-m", "predictors", "make-demo-models", str(repository)], check=True,
                   timeout=600, env={**os.environ, **env}, capture_output=True)
    with run_server(["--model-repository", str(repository), "--device", "cpu"], root / "server.log", env=env,
                    wait_for=MODELS, timeout=900) as process:
        yield process


@pytest.fixture(scope="module")
def reference_answer(server: ServerProcess) -> dict:
    """Taken before any hostile request."""
    return classify(server, REFERENCE)


def classify(server: ServerProcess, image: bytes, model: str = JUDGE) -> dict:
    response = post_v1(server, model, {"instances": [{"image": {"b64": b64(image)}}]})
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def post_v1(server: ServerProcess, model: str, body: object, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=120, **kwargs)


def post_raw(server: ServerProcess, path: str, content: bytes, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", content=content, headers=headers or {}, timeout=120)


def rejected(response: httpx.Response, status: int, code: str) -> dict:
    SEEN_CODES.add(code)
    return assert_error(response, status, code)


def image_instance(model: str, image: bytes) -> dict:
    instance: dict = {"image": {"b64": b64(image)}}
    if model == ENTAILMENT:
        instance["hypothesis"] = "a picture"
    return instance


# ---- images ---------------------------------------------------------------------------------------

BROKEN = [(f"{kind}-{fmt.lower()}", build(fmt), status, code)
          for fmt in corpus.SUPPORTED
          for kind, build, status, code in [("truncated", corpus.truncated, 400, "INVALID_IMAGE"),
                                            ("corrupt", corpus.corrupt, 400, "INVALID_IMAGE"),
                                            ("bomb", corpus.bomb, 413, "IMAGE_TOO_LARGE")]]
BROKEN += [(f"unsupported-{name}", data, 400, "INVALID_IMAGE") for name, data in corpus.unsupported().items()]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("name", "data", "status", "code"), BROKEN, ids=[case[0] for case in BROKEN])
def test_broken_and_unsupported_images_are_refused(server, reference_answer, model: str, name: str, data: bytes,
                                                   status: int, code: str) -> None:
    rejected(post_v1(server, model, {"instances": [image_instance(model, data)]}), status, code)


UNUSUAL = corpus.unusual()


@pytest.mark.parametrize("name", list(UNUSUAL))
def test_unusual_images_are_accepted_as_their_rgb_pixels(server, reference_answer, name: str) -> None:
    data = UNUSUAL[name]
    answer, expected = classify(server, data), classify(server, corpus.as_server_sees_it(data))
    assert answer["labels"] == expected["labels"]
    assert answer["scores"] == pytest.approx(expected["scores"], rel=1e-5)


def test_unusual_images_in_one_request_to_the_classifier_and_visual_entailment(server, reference_answer) -> None:
    every_mode = [name for name in UNUSUAL if not name.startswith("exif-")] + ["exif-orientation-6"]
    for model, names in ((CHEAP, list(UNUSUAL)), (ENTAILMENT, every_mode)):
        response = post_v1(server, model, {"instances": [image_instance(model, UNUSUAL[name]) for name in names]})
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == len(names)


def test_a_small_unusual_image_is_enhanced(server, reference_answer) -> None:
    grey = encode(sample_image(12, (16, 16)).convert("LA"), "PNG")
    response = post_v1(server, "face-enhancement", {"instances": [{"image": {"b64": b64(grey)}}]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["width"] == 32


# ---- malformed JSON -------------------------------------------------------------------------------

VALID_V1 = json.dumps({"instances": [{"image": {"b64": b64(REFERENCE)}}]})
VALID_V2 = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64(REFERENCE)]}]})
MALFORMED_JSON = {
    "empty": b"",
    "whitespace": b" \n\t ",
    "number": b"42",
    "null": b"null",
    "string": b'"instances"',
    "list": b"[]",
    "empty-object": b"{}",
    "unclosed": b'{"instances": [',
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep-object-nesting": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "nan-image": b'{"instances": [{"image": NaN}], "inputs": [{"name": "image", "datatype": "BYTES", '
                 b'"shape": [1], "data": [NaN]}]}',
    "infinity-shape": b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [Infinity], "data": []}]}',
    "nan-parameter": VALID_V1[:-1].encode() + b', "parameters": {"top_k": NaN}}',
    "invalid-utf8": b'{"instances": [{"image": {"b64": "\xff\xfe\xfd"}}]}',
    "invalid-utf8-key": b'{"\xc3\x28": 1}',
    "lone-surrogate-b64": b'{"instances": [{"image": {"b64": "\\ud800"}}], "inputs": [{"name": "image", '
                          b'"datatype": "BYTES", "shape": [1], "data": ["\\ud800"]}]}',
    "trailing-garbage-v1": VALID_V1.encode() + b"garbage",
    "trailing-garbage-v2": VALID_V2.encode() + b"}}",
    "two-documents": VALID_V1.encode() + b"\n" + VALID_V1.encode(),
    "utf16": VALID_V1.encode("utf-16"),
    "nul-bytes": b"\x00" * 64,
}


@pytest.mark.parametrize("route", ["/v1/models/{}:predict", "/v2/models/{}/infer"], ids=["v1", "v2"])
@pytest.mark.parametrize("content_type", ["application/json", None], ids=["json", "no-content-type"])
@pytest.mark.parametrize("name", list(MALFORMED_JSON))
def test_malformed_json_is_invalid_input(server, reference_answer, route: str, content_type: str | None,
                                         name: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    rejected(post_raw(server, route.format(CHEAP), MALFORMED_JSON[name], headers), 400, "INVALID_INPUT")


@pytest.mark.parametrize("field", ["hypothesis", "premise"])
def test_lone_surrogates_in_text_are_invalid_input(server, reference_answer, field: str) -> None:
    instance = {"image": {"b64": b64(REFERENCE)}, "hypothesis": "a dog", field: "a \ud800 dog"}
    body = json.dumps({"instances": [instance]}).encode()  # ensure_ascii: the surrogate travels as \ud800
    rejected(post_raw(server, f"/v1/models/{ENTAILMENT}:predict", body), 400, "INVALID_INPUT")
    v2 = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64(REFERENCE)]},
                     {"name": field, "datatype": "BYTES", "shape": [1], "data": ["a \ud800 dog"]}]}
    if field == "premise":
        v2["inputs"].append({"name": "hypothesis", "datatype": "BYTES", "shape": [1], "data": ["a dog"]})
    rejected(post_raw(server, f"/v2/models/{ENTAILMENT}/infer", json.dumps(v2).encode()), 400, "INVALID_INPUT")


# ---- uploads: multipart garbage, raw bodies of the wrong type ---------------------------------------

MULTIPART_GARBAGE = corpus.multipart_garbage(REFERENCE)


@pytest.mark.parametrize("model", [CHEAP, ENTAILMENT])
@pytest.mark.parametrize("name", list(MULTIPART_GARBAGE))
def test_multipart_garbage_is_invalid_input(server, reference_answer, model: str, name: str) -> None:
    content_type, body = MULTIPART_GARBAGE[name]
    query = "?hypothesis=a%20picture" if model == ENTAILMENT else ""
    rejected(post_raw(server, f"/v1/models/{model}:predict{query}", body, {"content-type": content_type}), 400,
             "INVALID_INPUT")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("name", "data", "status", "code"), BROKEN[::4], ids=[case[0] for case in BROKEN[::4]])
def test_broken_images_uploaded_are_refused_as_in_json(server, reference_answer, model: str, name: str,
                                                       data: bytes, status: int, code: str) -> None:
    query = "?hypothesis=a%20picture" if model == ENTAILMENT else ""
    body = corpus.form_part(b"image", data) + corpus.form_end()
    rejected(post_raw(server, f"/v1/models/{model}:predict{query}", body,
                      {"content-type": f"multipart/form-data; boundary={corpus.BOUNDARY}"}), status, code)
    rejected(post_raw(server, f"/v1/models/{model}:predict{query}", data, {"content-type": "image/jpeg"}), status,
             code)


@pytest.mark.parametrize("content_type", ["image/gif", "image/x-icon", "multipart/mixed; boundary=x", "text/plain",
                                          "application/pdf"])
def test_uploads_of_types_the_route_does_not_take_are_415(server, reference_answer, content_type: str) -> None:
    data = corpus.unsupported()["gif"]
    rejected(post_raw(server, f"/v1/models/{CHEAP}:predict", data, {"content-type": content_type}), 415,
             "UNSUPPORTED_MEDIA_TYPE")


def test_a_valid_upload_is_answered_as_its_json(server, reference_answer) -> None:
    body = corpus.form_part(b"image", REFERENCE) + corpus.form_end()
    response = post_raw(server, f"/v1/models/{JUDGE}:predict", body,
                        {"content-type": f"multipart/form-data; boundary={corpus.BOUNDARY}"})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["labels"] == reference_answer["labels"]


# ---- v2 tensors -----------------------------------------------------------------------------------


def tensor(name: str = "image", shape: object = (1,), datatype: str = "BYTES", data: object = None) -> dict:
    return {"name": name, "datatype": datatype, "shape": list(shape) if isinstance(shape, tuple) else shape,
            "data": [b64(REFERENCE)] if data is None else data}


TEXT = {"name": "hypothesis", "datatype": "BYTES", "shape": [1], "data": ["a picture"]}
V2_CASES = {
    "shape-2-for-1": (CHEAP, {"inputs": [tensor(shape=(2,))]}),
    "shape-1x1": (CHEAP, {"inputs": [tensor(shape=(1, 1))]}),
    "shape-empty": (CHEAP, {"inputs": [tensor(shape=())]}),
    "shape-0": (CHEAP, {"inputs": [tensor(shape=(0,), data=[])]}),
    "shape-negative": (CHEAP, {"inputs": [tensor(shape=(-1,))]}),
    "shape-string": (CHEAP, {"inputs": [tensor(shape="1")]}),
    "datatype-fp32": (CHEAP, {"inputs": [tensor(datatype="FP32", data=[0.5])]}),
    "datatype-bool": (CHEAP, {"inputs": [tensor(datatype="BOOL", data=[True])]}),
    "datatype-unknown": (CHEAP, {"inputs": [tensor(datatype="STRING")]}),
    "data-numbers": (CHEAP, {"inputs": [tensor(data=[1])]}),
    "data-nested": (CHEAP, {"inputs": [tensor(data=[[b64(REFERENCE)]])]}),
    "data-not-base64": (CHEAP, {"inputs": [tensor(data=["not base64!"])]}),
    "name-unknown": (CHEAP, {"inputs": [tensor(name="img")]}),
    "name-case": (CHEAP, {"inputs": [tensor(name="IMAGE")]}),
    "name-empty": (CHEAP, {"inputs": [tensor(name="")]}),
    "inputs-duplicate": (CHEAP, {"inputs": [tensor(), tensor()]}),
    "inputs-extra-unknown": (CHEAP, {"inputs": [tensor(), tensor(name="mask")]}),
    "inputs-empty": (CHEAP, {"inputs": []}),
    "inputs-missing-hypothesis": (ENTAILMENT, {"inputs": [tensor()]}),
    "inputs-unequal-counts": (ENTAILMENT, {"inputs": [tensor(shape=(2,), data=[b64(REFERENCE)] * 2), TEXT]}),
    "too-many-items": (CHEAP, {"inputs": [tensor(shape=(65,), data=[b64(REFERENCE)] * 65)]}),
    "output-unknown": (CHEAP, {"inputs": [tensor()], "outputs": [{"name": "logits"}]}),
    "output-duplicate": (CHEAP, {"inputs": [tensor()], "outputs": [{"name": "labels"}, {"name": "labels"}]}),
    "output-not-object": (CHEAP, {"inputs": [tensor()], "outputs": ["labels"]}),
    "parameters-not-object": (CHEAP, {"inputs": [tensor()], "parameters": [1]}),
    "parameter-unknown": (CHEAP, {"inputs": [tensor()], "parameters": {"top_p": 1}}),
    "face-parameter-wrong": ("face-enhancement", {"inputs": [tensor()], "parameters": {"output_format": "gif"}}),
}


@pytest.mark.parametrize("name", list(V2_CASES))
def test_inconsistent_v2_requests_are_invalid_input(server, reference_answer, name: str) -> None:
    model, body = V2_CASES[name]
    rejected(post_raw(server, f"/v2/models/{model}/infer", json.dumps(body).encode(),
                      {"content-type": "application/json"}), 400, "INVALID_INPUT")


# ---- the binary tensor extension with lying headers ------------------------------------------------


def binary_request(header_length_delta: int = 0, size_delta: int = 0, prefix_delta: int = 0,
                   trailing: bytes = b"", header_length: str | None = None) -> tuple[bytes, dict]:
    tensor_bytes = struct.pack("<I", len(REFERENCE) + prefix_delta) + REFERENCE
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(tensor_bytes) + size_delta}}]}).encode()
    stated = header_length if header_length is not None else str(len(header) + header_length_delta)
    return header + tensor_bytes + trailing, {"inference-header-content-length": stated,
                                              "content-type": "application/octet-stream"}


LYING = {
    "header-length-past-body": binary_request(header_length_delta=10**6),
    "header-length-negative": binary_request(header_length="-5"),
    "header-length-not-a-number": binary_request(header_length="12abc"),
    "header-length-short": binary_request(header_length_delta=-3),
    "header-length-long": binary_request(header_length_delta=3),
    "header-length-zero": binary_request(header_length="0"),
    "binary-size-past-end": binary_request(size_delta=100),
    "binary-size-short": binary_request(size_delta=-1),
    "bytes-prefix-past-tensor": binary_request(prefix_delta=1),
    "bytes-prefix-huge": binary_request(prefix_delta=2**31),
    "bytes-prefix-short": binary_request(prefix_delta=-10),
    "bytes-left-over": binary_request(trailing=b"\x00" * 9),
}


@pytest.mark.parametrize("name", list(LYING))
def test_lying_binary_extension_headers_are_invalid_input(server, reference_answer, name: str) -> None:
    body, headers = LYING[name]
    rejected(post_raw(server, f"/v2/models/{CHEAP}/infer", body, headers), 400, "INVALID_INPUT")


def test_an_honest_binary_request_is_answered(server, reference_answer) -> None:
    body, headers = binary_request()
    assert post_raw(server, f"/v2/models/{CHEAP}/infer", body, headers).status_code == 200


# ---- inconsistent gRPC messages -------------------------------------------------------------------


def grpc_infer(server: ServerProcess, request: service_pb2.ModelInferRequest) -> grpc.RpcError:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(request, timeout=60)
    return error.value


def grpc_request(model: str = CHEAP, **changes) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    image = request.inputs.add(name=changes.get("name", "image"), datatype=changes.get("datatype", "BYTES"),
                               shape=changes.get("shape", [1]))
    if "raw" in changes:
        request.raw_input_contents.extend(changes["raw"])
    else:
        image.contents.bytes_contents.extend(changes.get("contents", [REFERENCE]))
    return request


def raw_bytes(*elements: bytes, lie: int = 0) -> bytes:
    return b"".join(struct.pack("<I", len(e) + lie) + e for e in elements)


def _contents_and_raw() -> service_pb2.ModelInferRequest:
    request = grpc_request(raw=[raw_bytes(REFERENCE)])
    request.inputs[0].contents.bytes_contents.append(REFERENCE)
    return request


GRPC_CASES = {
    "raw-count-above-inputs": (grpc_request(raw=[raw_bytes(REFERENCE), raw_bytes(REFERENCE)]), "INVALID_ARGUMENT",
                               "INVALID_INPUT"),
    "raw-and-contents": (_contents_and_raw(), "INVALID_ARGUMENT", "INVALID_INPUT"),
    "raw-prefix-lies": (grpc_request(raw=[raw_bytes(REFERENCE, lie=5)]), "INVALID_ARGUMENT", "INVALID_INPUT"),
    "shape-2-for-1": (grpc_request(shape=[2]), "INVALID_ARGUMENT", "INVALID_INPUT"),
    "shape-2d": (grpc_request(shape=[1, 1]), "INVALID_ARGUMENT", "INVALID_INPUT"),
    "datatype-fp32": (grpc_request(datatype="FP32"), "INVALID_ARGUMENT", "INVALID_INPUT"),
    "datatype-unknown": (grpc_request(datatype="STRING"), "INVALID_ARGUMENT", "INVALID_INPUT"),
    "name-unknown": (grpc_request(name="img"), "INVALID_ARGUMENT", "INVALID_INPUT"),
    "no-inputs": (service_pb2.ModelInferRequest(model_name=CHEAP), "INVALID_ARGUMENT", "INVALID_INPUT"),
    "image-not-an-image": (grpc_request(contents=[b"%PDF-1.7"]), "INVALID_ARGUMENT", "INVALID_IMAGE"),
    "unknown-model": (grpc_request(model="../general-recognition"), "NOT_FOUND", "MODEL_NOT_FOUND"),
    "empty-model-name": (grpc_request(model=""), "NOT_FOUND", "MODEL_NOT_FOUND"),
}


@pytest.mark.parametrize("name", list(GRPC_CASES))
def test_inconsistent_grpc_messages_get_documented_status(server, reference_answer, name: str) -> None:
    request, status, code = GRPC_CASES[name]
    error = grpc_infer(server, request)
    assert error.code().name == status, error.details()
    assert error.details().startswith(f"[{code}] ") and "request_id=" in error.details()
    SEEN_CODES.add(code)


# ---- hostile model names and broken HTTP (raw sockets: no client normalises these) -------------------


def raw_http(server: ServerProcess, head: bytes, body: bytes = b"", timeout: float = 30) -> tuple[int, bytes, bytes]:
    """Sends `head` (request line and headers, without the blank line) and `body`; status, headers, body."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=timeout) as sock:
        sock.sendall(head + b"\r\nConnection: close\r\n\r\n" + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head_part, _, payload = received.partition(b"\r\n\r\n")
    return int(head_part.split(b" ", 2)[1]), head_part, payload


def post_head(path: bytes, body: bytes) -> bytes:
    return b"POST " + path + b" HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n" \
        + b"Content-Length: %d" % len(body)


HOSTILE_ROUTES = {
    "dot-dot": (b"/v2/models/../image-classification/infer", "NOT_FOUND"),
    "encoded-dot-dot": (b"/v2/models/%2e%2e%2fimage-classification/infer", "NOT_FOUND"),
    "v1-traversal": (b"/v1/models/..%2f..%2fetc%2fpasswd:predict", "NOT_FOUND"),
    "nul": (b"/v2/models/image-classification%00/infer", "MODEL_NOT_FOUND"),
    "newline": (b"/v2/models/x%0d%0aFORGED%20LINE/infer", "MODEL_NOT_FOUND"),
    "very-long": (b"/v2/models/" + b"m" * 8000 + b"/infer", "MODEL_NOT_FOUND"),
    "unicode": (b"/v2/models/%E6%A8%A1%E5%9E%8B/infer", "MODEL_NOT_FOUND"),
    "invalid-utf8": (b"/v2/models/%ff%fe/infer", "MODEL_NOT_FOUND"),
    "v1-unicode": (b"/v1/models/%F0%9F%90%88:predict", "MODEL_NOT_FOUND"),
    "slash-in-name": (b"/v2/models/image-classification%2Finfer/infer", "NOT_FOUND"),
}


@pytest.mark.parametrize("name", list(HOSTILE_ROUTES))
def test_hostile_model_names_are_not_found(server, reference_answer, name: str) -> None:
    path, code = HOSTILE_ROUTES[name]
    status, _, payload = raw_http(server, post_head(path, VALID_V2.encode()), VALID_V2.encode())
    body = json.loads(payload)
    assert (status, body["code"]) == (404, code)
    assert len(payload) < 12_000 and set(body) == {"error", "code", "request_id"}
    SEEN_CODES.add(code)


@pytest.mark.parametrize(
    "head",
    [b"POST /v2/models/\xe6\xa8\xa1/infer HTTP/1.1\r\nHost: test", b"POST /v2/models/" + b"m" * 70_000 + b"/infer "
     b"HTTP/1.1\r\nHost: test", b"POST /v2/models/m/infer HTTP/1.1\r\nHost: test\r\nBad Header: x",
     b"GARBAGE\x00\x01\x02"],
    ids=["raw-non-ascii-target", "request-line-70kb", "header-name-with-space", "not-http"],
)
def test_unparseable_http_gets_the_http_layers_400(server, reference_answer, head: bytes) -> None:
    """Documented: what is not HTTP/1.1 is refused by the HTTP layer before any route (plain-text 400)."""
    status, _, payload = raw_http(server, head)
    assert status == 400 and payload == b"Invalid HTTP request received."


def test_a_megabyte_of_headers_does_not_hurt(server, reference_answer) -> None:
    head = post_head(f"/v1/models/{CHEAP}:predict".encode(), VALID_V1.encode()) + b"\r\nX-Padding: " + b"p" * 2**20
    status, _, payload = raw_http(server, head, VALID_V1.encode())
    assert status == 200, payload[:300]


# ---- oversized bodies, slow and vanishing clients ----------------------------------------------------


@pytest.mark.parametrize("route", [f"/v1/models/{CHEAP}:predict", f"/v2/models/{CHEAP}/infer"], ids=["v1", "v2"])
def test_oversized_bodies_are_payload_too_large(server, reference_answer, route: str) -> None:
    # declared: answered from the Content-Length, before the body is read
    status, _, payload = raw_http(server, post_head(route.encode(), b"x" * (LIMIT + 1)))
    assert status == 413 and json.loads(payload)["code"] == "PAYLOAD_TOO_LARGE"
    # chunked, no Content-Length: stopped once the limit is passed
    def chunks() -> Iterator[bytes]:
        for _ in range(21):
            yield b" " * (1024 * 1024 + 1)

    rejected(post_raw(server, route, chunks(), {"content-type": "application/json"}), 413, "PAYLOAD_TOO_LARGE")  # type: ignore[arg-type]


def test_slow_clients_holding_bodies_open_do_not_block_others(server, reference_answer) -> None:
    body = VALID_V1.encode()
    sockets = []
    try:
        for _ in range(16):
            sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
            sock.sendall(post_head(f"/v1/models/{CHEAP}:predict".encode(), body) + b"\r\n\r\n" + body[:20])
            sockets.append(sock)
        started = time.monotonic()
        assert classify(server, REFERENCE)["labels"] == reference_answer["labels"]
        assert time.monotonic() - started < 20
        for sock in sockets[:8]:  # half of them finish their body slowly: they get their answer
            for offset in range(20, len(body), len(body) // 4 + 1):
                sock.sendall(body[offset : offset + len(body) // 4 + 1])
                time.sleep(0.05)
        for sock in sockets[:8]:
            assert sock.recv(12).startswith(b"HTTP/1.1 200")
    finally:
        for sock in sockets:  # the other half hang up mid-body
            sock.close()


def test_clients_that_disconnect_mid_request_are_client_closed(server, reference_answer) -> None:
    models = (CHEAP, "general-recognition", ENTAILMENT)

    def closed() -> float:
        return sum(metric(server, "predictors_requests_total", model=model, protocol="v1", code="CLIENT_CLOSED")
                   for model in models)

    before = closed()
    for model in models:
        body = json.dumps({"instances": [image_instance(model, REFERENCE)] * 8}).encode()
        head = post_head(f"/v1/models/{model}:predict".encode(), body) + b"\r\n\r\n"
        for _ in range(4):  # gone halfway through the body
            with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
                sock.sendall(head + body[: len(body) // 2])
        for _ in range(4):  # whole request sent, gone before the answer
            with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
                sock.sendall(head + body)
    deadline = time.monotonic() + 60
    while closed() - before < 24 and time.monotonic() < deadline:
        time.sleep(0.5)
    # every mid-body hang-up is client-closed; a whole request may be answered before the server notices
    assert 12 <= closed() - before <= 24


# ---- the aftermath --------------------------------------------------------------------------------


def test_afterwards_the_server_is_healthy_and_unchanged(server, reference_answer) -> None:
    assert server.process.poll() is None
    assert httpx.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
    again = classify(server, REFERENCE)
    assert again["labels"] == reference_answer["labels"]
    assert again["scores"] == pytest.approx(reference_answer["scores"], rel=1e-5)
    deadline = time.monotonic() + 60  # the vanished clients' work drains
    def busy() -> dict[str, float]:
        return {f"{gauge}{{{model}}}": value for model in MODELS
                for gauge in ("predictors_requests_in_flight", "predictors_queue_depth_items")
                if (value := metric(server, gauge, model=model))}
    while busy() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert busy() == {}
    for model in MODELS:
        for protocol in ("v1", "v2", "grpc"):
            assert metric(server, "predictors_requests_total", model=model, protocol=protocol,
                          code="INTERNAL_ERROR") == 0, (model, protocol)
    log = server.log()
    assert "Traceback" not in log
    assert "\nFORGED LINE" not in log
    documented = documented_codes()
    assert SEEN_CODES and documented >= SEEN_CODES, SEEN_CODES - documented
