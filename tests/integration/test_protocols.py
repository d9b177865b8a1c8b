"""The same model answered over v1, v2 JSON, v2 binary (tritonclient http) and gRPC (tritonclient grpc)."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from devtools.protocols import classify_over_every_protocol, disagreements, v1_body
from tests.conftest import encode, sample_image

IMAGES = [encode(sample_image(seed), "JPEG") for seed in range(3)] + [encode(sample_image(9), "PNG")]


def v1_predict(server, model: str, images: list[bytes], **parameters) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{model}:predict", json=v1_body(images, **parameters), timeout=120)


@pytest.mark.parametrize("model", ["general-recognition", "image-classification"])
def test_all_protocols_agree(server, model: str) -> None:
    answers = classify_over_every_protocol(server.url, server.grpc_target, model, IMAGES, top_k=3)
    assert len(answers.v1) == len(IMAGES)
    for prediction in answers.v1:
        assert len(prediction["labels"]) == len(prediction["scores"]) == 3
    labels, scores = answers.v2_outputs["labels"], answers.v2_outputs["scores"]
    assert labels["shape"] == [len(IMAGES), 3] and labels["datatype"] == "BYTES"
    assert scores["shape"] == [len(IMAGES), 3] and scores["datatype"] == "FP32"
    assert set(answers.others) == {"v2", "tritonclient-http", "tritonclient-grpc"}
    assert disagreements(answers) == []


def test_default_top_k_is_five(server) -> None:
    response = v1_predict(server, "general-recognition", IMAGES[:1])
    assert len(response.json()["predictions"][0]["labels"]) == 5


def test_tritonclient_json_outputs(server) -> None:
    http = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = httpclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array(IMAGES[:1], dtype=object), binary_data=True)
    result = http.infer("image-classification", [tensor],
                        outputs=[httpclient.InferRequestedOutput("scores", binary_data=False)])
    assert result.as_numpy("scores").shape == (1, 5)
    assert result.as_numpy("labels") is None  # only the requested output comes back


def test_model_metadata_lists_real_tensors(server) -> None:
    metadata = httpx.get(f"{server.url}/v2/models/general-recognition").json()
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [
        {"name": "labels", "datatype": "BYTES", "shape": [-1, -1]},
        {"name": "scores", "datatype": "FP32", "shape": [-1, -1]},
    ]
    grpc = grpcclient.InferenceServerClient(server.grpc_target)
    grpc_metadata = grpc.get_model_metadata("general-recognition", as_json=True)
    assert [o["name"] for o in grpc_metadata["outputs"]] == ["labels", "scores"]
    assert httpx.get(f"{server.url}/v2/models").json()["models"] == ["general-recognition", "image-classification"]


def test_health_endpoints(server) -> None:
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{server.url}/v2/models/general-recognition/ready").json()["ready"] is True
    assert httpx.get(f"{server.url}/v1/models/general-recognition").status_code == 200
    grpc = grpcclient.InferenceServerClient(server.grpc_target)
    assert grpc.is_server_live() and grpc.is_server_ready() and grpc.is_model_ready("image-classification")


def test_request_id_is_echoed_or_generated(server) -> None:
    given = v1_predict(server, "image-classification", IMAGES[:1])
    assert len(given.headers["x-request-id"]) >= 16
    response = httpx.post(
        f"{server.url}/v1/models/image-classification:predict",
        json={"instances": [{"image": {"b64": base64.b64encode(IMAGES[0]).decode()}}]},
        headers={"X-Request-ID": "trace-me-42"},
        timeout=60,
    )
    assert response.headers["x-request-id"] == "trace-me-42"
    v2 = httpx.post(f"{server.url}/v2/models/image-classification/infer",
                    json={"id": "caller-id", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                                         "data": [base64.b64encode(IMAGES[0]).decode()]}]},
                    headers={"X-Request-ID": "trace-me-43"}, timeout=60)
    assert v2.headers["x-request-id"] == "trace-me-43"


def test_infer_command_prints_the_top_k_table(server, tmp_path) -> None:
    import subprocess
    import sys

    image = tmp_path / "photo.jpg"
    image.write_bytes(IMAGES[0])
    result = subprocess.run([sys.executable, "-m", "predictors", "infer", "general-recognition", str(image),
                             "--url", server.url, "--top-k", "3"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = v1_predict(server, "general-recognition", IMAGES[:1], top_k=3).json()["predictions"][0]
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["rank", "label", "score"]
    assert [line.split()[1] for line in lines[1:]] == expected["labels"]
    assert [float(line.split()[2]) for line in lines[1:]] == [round(s, 6) for s in expected["scores"]]


def test_infer_command_reports_errors(server, tmp_path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    result = subprocess.run([sys.executable, "-m", "predictors", "infer", "general-recognition", str(bad),
                             "--url", server.url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "INVALID_IMAGE (HTTP 400)" in result.stderr and "request_id" in result.stderr
