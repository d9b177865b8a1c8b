"""`face-enhancement` through the real server process, with real clients: v1 and v2 REST (httpx),
tritonclient HTTP (binary) and gRPC; FACE_NOT_FOUND, IMAGE_TOO_LARGE, INVALID_IMAGE, INVALID_INPUT;
PNG/JPEG output sizes; EXIF orientation; cross-request batching of faces.

One server serves two generated GPEN directories: `face-enhancement` (crafted detector: exactly one
face per image) and `face-noface` (a detector that never finds a face). A face costs one 512 px GPEN
pass (~5-8 s on a 2-core CPU), so face images are 16 px and face requests are few.
"""

from __future__ import annotations

import base64
import concurrent.futures
import io
import re
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from predictors.models.face_enhancement import demo
from tests.conftest import encode, sample_image
from tests.support.server import run_server

FACE = "face-enhancement"
NO_FACE = "face-noface"
TIMEOUT = 300.0

FACE_IMAGES = [encode(sample_image(seed, (16, 16)), "PNG") for seed in (21, 22)]


def noise_png(seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)), "PNG")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("face-enhancement-server")
    face_dir = demo.write(root / "gpen-one-face", seed=0, max_faces_per_forward=4)
    no_face_dir = demo.write(root / "gpen-no-face", seed=1, detector="none")
    cache = root / "modelscope-cache"
    cache.mkdir()
    args = [
        "--model-dir",
        f"{FACE}={face_dir}",
        "--model-dir",
        f"{NO_FACE}={no_face_dir}",
        "--device",
        "cpu",
        "--max-batch-size",
        "4",
        "--max-latency-ms",
        "500",
    ]
    with run_server(
        args, root / "server.log", env={"MODELSCOPE_CACHE": str(cache)}, wait_for=[FACE, NO_FACE], timeout=900
    ) as process:
        yield process


def v1(server, model: str, images: list[bytes], **parameters) -> httpx.Response:
    body = {
        "instances": [{"image": {"b64": base64.b64encode(image).decode()}} for image in images],
        "parameters": parameters,
    }
    return httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=TIMEOUT)


def v1_image(prediction: dict) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(prediction["image"]["b64"])))
    assert image.size == (prediction["width"], prediction["height"])
    return image


def check_prediction(prediction: dict, faces: int, size: tuple[int, int]) -> None:
    assert set(prediction) == {"image", "faces", "quality_score", "needs_review", "width", "height"}
    assert prediction["faces"] == faces
    assert (prediction["width"], prediction["height"]) == size
    assert 0.0 <= prediction["quality_score"] <= 1.0
    assert prediction["needs_review"] is (prediction["quality_score"] < 0.5)
    assert v1_image(prediction).size == size


def check_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["error"] and body["request_id"] == response.headers["x-request-id"]
    return body


def metric(server, name: str, model: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    match = re.search(rf'^{name}\{{[^}}]*model="{model}"[^}}]*\}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def one_by_one(server) -> list[dict]:
    """Each face image in a request of its own, PNG output."""
    predictions = []
    for image in FACE_IMAGES:
        response = v1(server, FACE, [image], output_format="png")
        assert response.status_code == 200, response.text
        predictions.append(response.json()["predictions"][0])
    return predictions


# ---- the face path -----------------------------------------------------------------------------


def test_v1_face_is_enhanced(server, one_by_one) -> None:
    for prediction in one_by_one:
        check_prediction(prediction, faces=1, size=(32, 32))
        assert v1_image(prediction).format == "PNG"


def test_concurrent_requests_are_batched_and_equal_one_by_one(server, one_by_one) -> None:
    count, total = "predictors_batch_size_items_count", "predictors_batch_size_items_sum"
    with concurrent.futures.ThreadPoolExecutor(len(FACE_IMAGES) + 1) as pool:
        # A pass already on the device first: the pair sent meanwhile queues behind it and leaves together,
        # however slowly this machine's clients and workers bring them in (sent to an idle model, the first
        # one's pass may start before the second has arrived).
        batches_before = metric(server, count, FACE)
        occupying = pool.submit(v1, server, FACE, [FACE_IMAGES[0]], output_format="png")
        deadline = time.monotonic() + TIMEOUT
        while metric(server, count, FACE) < batches_before + 1:
            assert time.monotonic() < deadline, "the first request never reached the device"
            time.sleep(0.05)
        batches_before, items_before = metric(server, count, FACE), metric(server, total, FACE)
        responses = list(pool.map(lambda image: v1(server, FACE, [image], output_format="png"), FACE_IMAGES))
        assert occupying.result().status_code == 200
    batches = metric(server, count, FACE) - batches_before
    items = metric(server, total, FACE) - items_before
    assert (items, batches) == (len(FACE_IMAGES), 1)  # the two requests shared one forward pass
    for response, single in zip(responses, one_by_one, strict=True):
        assert response.status_code == 200, response.text
        prediction = response.json()["predictions"][0]
        assert prediction["faces"] == single["faces"] == 1
        ours = np.asarray(v1_image(prediction).convert("RGB"), dtype=int)
        alone = np.asarray(v1_image(single).convert("RGB"), dtype=int)
        assert np.abs(ours - alone).max() <= 1
        assert prediction["quality_score"] == pytest.approx(single["quality_score"], abs=1e-3)


def test_tritonclient_grpc_face(server) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_target)
    tensor = grpcclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([FACE_IMAGES[0]], dtype=object))
    result = client.infer(
        FACE, [tensor], parameters={"output_format": "jpeg", "jpeg_quality": 90}, client_timeout=TIMEOUT
    )
    assert result.as_numpy("faces").tolist() == [1]
    assert result.as_numpy("needs_review").dtype == np.bool_
    assert 0.0 <= float(result.as_numpy("quality_score")[0]) <= 1.0
    image = Image.open(io.BytesIO(result.as_numpy("image")[0]))
    assert image.format == "JPEG" and image.size == (32, 32)
    assert result.as_numpy("width").tolist() == [32] and result.as_numpy("height").tolist() == [32]


# ---- the no-face path, protocols and output formats --------------------------------------------


def test_v2_json_without_face(server) -> None:
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [2],
                "data": [
                    base64.b64encode(noise_png(1, (20, 12))).decode(),
                    base64.b64encode(noise_png(2, (9, 15))).decode(),
                ],
            }
        ],
        "parameters": {"require_face": False, "output_format": "png"},
    }
    response = httpx.post(f"{server.url}/v2/models/{NO_FACE}/infer", json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    assert {name: outputs[name]["datatype"] for name in outputs} == {
        "image": "BYTES",
        "faces": "INT32",
        "quality_score": "FP32",
        "needs_review": "BOOL",
        "width": "INT32",
        "height": "INT32",
    }
    assert outputs["faces"]["data"] == [0, 0]
    assert outputs["width"]["data"] == [40, 19] and outputs["height"]["data"] == [24, 31]  # odd side: 2n+1
    sizes = [Image.open(io.BytesIO(base64.b64decode(data))).size for data in outputs["image"]["data"]]
    assert sizes == [(40, 24), (19, 31)]


@pytest.mark.parametrize("output_format", ["png", "jpeg"])
@pytest.mark.parametrize("upscale", [True, False])
def test_tritonclient_http_binary_output_sizes(server, output_format, upscale) -> None:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=TIMEOUT)
    tensor = httpclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([noise_png(3, (30, 14))], dtype=object), binary_data=True)
    result = client.infer(
        NO_FACE,
        [tensor],
        parameters={"require_face": False, "upscale": upscale, "output_format": output_format},
        outputs=[
            httpclient.InferRequestedOutput(name, binary_data=True)
            for name in ("image", "faces", "width", "height")
        ],
    )
    image = Image.open(io.BytesIO(result.as_numpy("image")[0]))
    expected = (60, 28) if upscale else (30, 14)
    assert image.format == output_format.upper() and image.size == expected
    assert (int(result.as_numpy("width")[0]), int(result.as_numpy("height")[0])) == expected
    assert result.as_numpy("faces").tolist() == [0]
    assert result.as_numpy("quality_score") is None  # only the requested outputs


def test_exif_rotated_input_is_handled(server) -> None:
    picture = sample_image(5, (24, 12))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    data = encode(picture, "JPEG", exif=exif.tobytes(), quality=95)
    upright = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").transpose(Image.Transpose.ROTATE_270))
    response = v1(server, NO_FACE, [data], require_face=False, upscale=False, output_format="png")
    assert response.status_code == 200, response.text
    prediction = response.json()["predictions"][0]
    check_prediction(prediction, faces=0, size=(12, 24))
    # no face, no super-resolution: the upright picture comes back unchanged (no colour swap either)
    assert np.array_equal(np.asarray(v1_image(prediction).convert("RGB")), upright)
    assert prediction["quality_score"] == pytest.approx(1.0) and prediction["needs_review"] is False


# ---- errors ------------------------------------------------------------------------------------


def test_face_not_found(server) -> None:
    check_error(v1(server, NO_FACE, [noise_png(4, (32, 32))]), 422, "FACE_NOT_FOUND")
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(noise_png(4, (32, 32))).decode()],
            }
        ]
    }
    check_error(
        httpx.post(f"{server.url}/v2/models/{NO_FACE}/infer", json=body, timeout=TIMEOUT),
        422,
        "FACE_NOT_FOUND",
    )
    client = grpcclient.InferenceServerClient(server.grpc_target)
    tensor = grpcclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([noise_png(4, (32, 32))], dtype=object))
    with pytest.raises(InferenceServerException) as error:
        client.infer(NO_FACE, [tensor])
    assert "FAILED_PRECONDITION" in str(error.value.status()) or "FACE_NOT_FOUND" in str(error.value)


def test_image_too_large_before_any_model_runs(server) -> None:
    items_before = metric(server, "predictors_items_processed_total", FACE)
    big = encode(Image.new("RGB", (2100, 10), (90, 90, 90)), "PNG")
    check_error(v1(server, FACE, [big]), 413, "IMAGE_TOO_LARGE")
    body = {
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(big).decode()]}
        ]
    }
    check_error(
        httpx.post(f"{server.url}/v2/models/{FACE}/infer", json=body, timeout=TIMEOUT), 413, "IMAGE_TOO_LARGE"
    )
    assert metric(server, "predictors_items_processed_total", FACE) == items_before


def test_invalid_image(server) -> None:
    check_error(v1(server, FACE, [b"\x89PNG\r\n\x1a\n this is not an image"]), 400, "INVALID_IMAGE")
    truncated = noise_png(6, (64, 64))[:200]
    check_error(v1(server, NO_FACE, [truncated], require_face=False), 400, "INVALID_IMAGE")


@pytest.mark.parametrize("parameters", [{"output_format": "gif"}, {"jpeg_quality": 0}, {"colour": "red"}])
def test_invalid_parameters(server, parameters) -> None:
    check_error(v1(server, NO_FACE, [noise_png(7, (8, 8))], **parameters), 400, "INVALID_INPUT")


def test_metadata_lists_the_outputs(server) -> None:
    metadata = httpx.get(f"{server.url}/v2/models/{FACE}", timeout=10).json()
    assert [output["name"] for output in metadata["outputs"]] == [
        "image",
        "faces",
        "quality_score",
        "needs_review",
        "width",
        "height",
    ]
    assert [i["name"] for i in metadata["inputs"]] == ["image"]


def test_review_flags_are_counted(server) -> None:
    before = metric(server, "predictors_results_needing_review_total", NO_FACE)
    response = v1(server, NO_FACE, [noise_png(8, (16, 16))], require_face=False)
    flagged = response.json()["predictions"][0]["needs_review"]
    assert metric(server, "predictors_results_needing_review_total", NO_FACE) == before + (
        1 if flagged else 0
    )
