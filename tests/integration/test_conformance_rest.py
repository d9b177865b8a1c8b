"""The REST API against the published protocol documents themselves (docs/protocol.md).

- schemathesis generates requests from the Open Inference Protocol's own OpenAPI document
  (`open_inference_rest.yaml`, pinned: `tests/support/pinned.py`), valid and invalid, and checks each answer against
  it: no server error, the documented schema and content type for documented statuses, invalid data refused with
  a 4xx, and every error body the protocol's error object (`{"error": $string}`). The document lists only 200/400
  for most routes while `inference_rest.md` allows any error status ("typically 400"), so the status itself is
  checked against our error table by the schemathesis run over our own document (`test_openapi.py`), not here;
- hand-written cases for what generation cannot reach: the binary tensor data extension, `binary_data_output` with
  and without `outputs`, `id`, parameters of every JSON kind, versions, metadata and health objects;
- KServe's v1 protocol (its published API table: list, ready, predict; explain is not served here).
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)

from tests.conftest import encode, sample_image
from tests.support.oip_rest import failures_of_every_operation, oip_document, oip_errors
from tests.support.server import ServerProcess

MODELS = ["general-recognition", "image-classification"]
IMAGE = encode(sample_image(3), "JPEG")
B64 = base64.b64encode(IMAGE).decode()
#: generated requests per operation and mode (the OIP document has 9 operations here, 6 of them per model name)
EXAMPLES = 25


def image_tensor(count: int = 1, **extra: Any) -> dict[str, Any]:
    return {"name": "image", "datatype": "BYTES", "shape": [count], "data": [B64] * count, **extra}


def infer(server: ServerProcess, body: Any, model: str = "image-classification", **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=120, **kwargs)


def nulls(value: Any, where: str = "") -> list[str]:
    """Where `value` holds a JSON null."""
    if value is None:
        return [where or "/"]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in nulls(item, f"{where}/{key}")]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in nulls(item, f"{where}/{index}")]
    return []


def binary_request(images: list[bytes], header: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = b"".join(struct.pack("<I", len(image)) + image for image in images)
    header = {**header, "inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                                    "parameters": {"binary_data_size": len(raw)}}]}
    encoded = json.dumps(header).encode()
    return encoded + raw, {"Inference-Header-Content-Length": str(len(encoded)),
                           "Content-Type": "application/octet-stream"}


def split_binary(response: httpx.Response) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(the JSON header, each binary output's bytes) of a binary extension answer."""
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    offset, tensors = length, {}
    for output in header["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is not None:
            tensors[output["name"]] = response.content[offset:offset + size]
            offset += size
    assert offset == len(response.content), "binary_data_size values do not add up to the body"
    return header, tensors


# ---- schemathesis over the OIP's own document -------------------------------------------------------------

def error_object(response: Any) -> None:
    """An error answer carries the protocol's error object: JSON with an `error` string."""
    if response.status_code >= 400:
        body = json.loads(response.content)
        assert isinstance(body.get("error"), str), f"{response.status_code} without the OIP error object: {body}"


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_the_oip_document_against_the_server(server: ServerProcess, mode: schemathesis.GenerationMode) -> None:
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    if mode is schemathesis.GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)
    failures, ran, sent = failures_of_every_operation(oip_document(MODELS), server.url, mode, EXAMPLES, checks,
                                                      error_object)
    print(f"{mode.value}: {ran} operations, {sent} requests")
    assert ran >= 9 and sent >= ran * 3, f"only {ran} operations, {sent} requests of the OIP document were run"
    assert not failures, "\n\n".join(failures)


# ---- what generation cannot reach ------------------------------------------------------------------------

def test_the_request_id_is_echoed_unchanged_and_absent_when_not_given(server: ServerProcess) -> None:
    for given in ("42", "caller/id with spaces ✓", ""):
        body = infer(server, {"id": given, "inputs": [image_tensor()]}).json()
        assert body.get("id", "") == given
    assert "id" not in infer(server, {"inputs": [image_tensor()]}).json()
    payload, headers = binary_request([IMAGE], {"id": "binary-7", "parameters": {"binary_data_output": True}})
    response = httpx.post(f"{server.url}/v2/models/general-recognition/infer", content=payload, headers=headers,
                          timeout=120)
    assert response.status_code == 200, response.text
    header, _ = split_binary(response)
    assert header["id"] == "binary-7"


def test_answers_hold_no_nulls_and_match_the_oip_schema(server: ServerProcess) -> None:
    for body in ({"inputs": [image_tensor(2)]},
                 {"id": "x", "inputs": [image_tensor()], "outputs": [{"name": "scores"}]},
                 {"inputs": [image_tensor()], "parameters": {"top_k": 2}}):
        answer = infer(server, body)
        assert answer.status_code == 200, answer.text
        document = answer.json()
        assert nulls(document) == [] and "model_version" not in document
        assert oip_errors("inference_response", document) == []
        assert document["model_name"] == "image-classification"


def test_binary_extension_in_and_out(server: ServerProcess) -> None:
    images = [IMAGE, encode(sample_image(5), "PNG")]
    payload, headers = binary_request(images, {"parameters": {"binary_data_output": True, "top_k": 3}})
    response = httpx.post(f"{server.url}/v2/models/general-recognition/infer", content=payload, headers=headers,
                          timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header, tensors = split_binary(response)
    assert oip_errors("inference_response", {**header, "outputs": [{**o, "data": []} for o in header["outputs"]]}) == []
    shapes = {o["name"]: o["shape"] for o in header["outputs"]}
    assert shapes == {"labels": [2, 3], "scores": [2, 3]}
    assert all("data" not in output for output in header["outputs"])
    scores = np.frombuffer(tensors["scores"], dtype="<f4").reshape(2, 3)
    json_answer = infer(server, {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                                             "data": [base64.b64encode(i).decode() for i in images]}],
                                 "parameters": {"top_k": 3}}, model="general-recognition").json()
    json_scores = {o["name"]: o for o in json_answer["outputs"]}["scores"]["data"]
    assert np.allclose(scores.reshape(-1), json_scores)


@pytest.mark.parametrize(("parameters", "outputs", "binary"), [
    ({"binary_data_output": True}, None, {"labels", "scores"}),
    ({"binary_data_output": True}, [{"name": "scores"}], {"scores"}),
    ({"binary_data_output": True}, [{"name": "scores", "parameters": {"binary_data": False}}, {"name": "labels"}],
     {"labels"}),
    ({}, [{"name": "labels", "parameters": {"binary_data": True}}, {"name": "scores"}], {"labels"}),
    ({"binary_data_output": False}, None, set()),
    ({}, [{"name": "scores"}], set()),
])
def test_binary_data_output_with_and_without_outputs(server: ServerProcess, parameters: dict[str, Any],
                                                     outputs: list[dict[str, Any]] | None, binary: set[str]) -> None:
    body: dict[str, Any] = {"inputs": [image_tensor()], "parameters": parameters}
    if outputs is not None:
        body["outputs"] = outputs
    response = infer(server, body)
    assert response.status_code == 200, response.text
    expected = {o["name"] for o in outputs} if outputs is not None else {"labels", "scores"}
    if not binary:
        assert "inference-header-content-length" not in response.headers
        assert {o["name"] for o in response.json()["outputs"]} == expected
        return
    header, tensors = split_binary(response)
    assert {o["name"] for o in header["outputs"]} == expected
    assert set(tensors) == binary
    assert {o["name"] for o in header["outputs"] if "data" in o} == expected - binary


@pytest.mark.parametrize(("parameters", "status"), [
    ({"top_k": 2}, 200),  # integer
    ({"top_k": 2, "timeout_ms": 60000.5}, 200),  # number
    ({"binary_data_output": False}, 200),  # boolean
    ({"top_k": "2"}, 400),  # a string is not an integer
    ({"top_k": 2.0}, 400),
    ({"top_k": True}, 400),
    ({"binary_data_output": "true"}, 400),
    ({"binary_data_output": 1}, 400),
    ({"timeout_ms": "soon"}, 400),
    ({"no_such_parameter": 1}, 400),
    ({"top_k": None}, 400),
])
def test_parameters_of_every_kind(server: ServerProcess, parameters: dict[str, Any], status: int) -> None:
    response = infer(server, {"inputs": [image_tensor()], "parameters": parameters})
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["code"] == "INVALID_INPUT"


@pytest.mark.parametrize("path", ["/v2/models/{m}/versions/1", "/v2/models/{m}/versions/1/ready",
                                  "/v2/models/{m}/versions/latest", "/v2/models/{m}/versions/%20/ready"])
def test_versioned_routes_are_404_for_every_version(server: ServerProcess, path: str) -> None:
    response = httpx.get(server.url + path.format(m="image-classification"))
    assert response.status_code == 404
    assert response.json()["code"] == "MODEL_NOT_FOUND" and "unversioned" in response.json()["error"]
    answer = httpx.post(f"{server.url}/v2/models/image-classification/versions/1/infer",
                        json={"inputs": [image_tensor()]}, timeout=60)
    assert answer.status_code == 404 and answer.json()["code"] == "MODEL_NOT_FOUND"
    unknown = httpx.get(f"{server.url}/v2/models/no-such-model/versions/1")
    assert unknown.status_code == 404 and "is not served" in unknown.json()["error"]


def test_metadata_and_health_objects(server: ServerProcess) -> None:
    from importlib.metadata import version

    for path in ("/v2", "/v2/"):
        metadata = httpx.get(server.url + path).json()
        assert metadata == {"name": "vision-predictors", "version": version("vision-predictors"),
                            "extensions": ["binary_tensor_data"]}
        assert oip_errors("metadata_server_response", metadata) == []
    for model in MODELS:
        model_metadata = httpx.get(f"{server.url}/v2/models/{model}").json()
        assert oip_errors("metadata_model_response", model_metadata) == []
        assert "versions" not in model_metadata and nulls(model_metadata) == []
        assert model_metadata["name"] == model and model_metadata["platform"] == "pytorch_modelscope"
        assert httpx.get(f"{server.url}/v2/models/{model}/ready").json() == {"name": model, "ready": True}
    assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}


def test_error_bodies_are_the_oip_error_object_plus_our_code(server: ServerProcess) -> None:
    for response in (infer(server, {"inputs": []}), infer(server, {"inputs": [image_tensor()]}, model="nope"),
                     httpx.get(f"{server.url}/v2/models/nope")):
        body = response.json()
        assert oip_errors("inference_error_response", body) == [] and isinstance(body["error"], str)
        assert set(body) == {"error", "code", "request_id"}


# ---- KServe v1 --------------------------------------------------------------------------------------------

def test_kserve_v1_protocol(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/v1/models").json() == {"models": MODELS}
    assert httpx.get(f"{server.url}/v1/models/image-classification").json() == {
        "name": "image-classification", "ready": True}
    predicted = httpx.post(f"{server.url}/v1/models/image-classification:predict",
                           json={"instances": [{"image": {"b64": B64}}, {"image": B64}]}, timeout=120).json()
    assert list(predicted) == ["predictions"] and len(predicted["predictions"]) == 2
    missing = httpx.get(f"{server.url}/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "MODEL_NOT_FOUND"
    explain = httpx.post(f"{server.url}/v1/models/image-classification:explain",
                         json={"instances": [{"image": B64}]}, timeout=60)
    assert explain.status_code == 404 and explain.json()["code"] == "NOT_FOUND"
