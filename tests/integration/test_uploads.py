"""Uploads on `POST /v1/models/{name}:predict` against the real server serving all four demo models: multipart
/form-data and raw image bodies sent with curl and httpx, answered as the JSON body with the same content is;
their limits and refusals (413 while streaming, the item limit, INVALID_IMAGE, unknown fields, unsupported
Content-Types); and face-enhancement's image answer (``Accept: image/...``) with its 406s.

The server runs with small limits (3 MB bodies, 4 items) so the limits cost little to reach. A face costs one
512 px GPEN pass (seconds on a 2-core CPU): face requests are few and their images 16-48 px.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import encode, sample_image
from tests.integration.test_errors import assert_error
from tests.support.server import ServerProcess, run_server

MODELS = ("general-recognition", "image-classification", "face-enhancement", "visual-entailment")
CLASSIFIERS = ("general-recognition", "image-classification")
FACE, ENTAILMENT = "face-enhancement", "visual-entailment"
MAX_BODY = 3_000_000
MAX_ITEMS = 4
CAT = encode(sample_image(31, (120, 90)), "JPEG")
DOG = encode(sample_image(32, (90, 120)), "PNG")
FACE_IMAGE = encode(sample_image(33, (32, 32)), "JPEG")
HYPOTHESIS = "there is an animal"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("uploads")
    env = {"MODELSCOPE_CACHE": str(root / "modelscope-cache")}
    subprocess.run([sys.executable, "-m", "predictors", "make-demo-models", str(root / "models")], check=True,
                   timeout=600, env={**os.environ, **env}, capture_output=True)
    args = ["--model-repository", str(root / "models"), "--device", "cpu", "--max-body-bytes", str(MAX_BODY),
            "--max-items-per-request", str(MAX_ITEMS)]
    with run_server(args, root / "server.log", env=env, wait_for=MODELS, timeout=900) as process:
        yield process


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pictures")
    for name, data in {"cat.jpg": CAT, "dog.png": DOG, "face.jpg": FACE_IMAGE}.items():
        (directory / name).write_bytes(data)
    (directory / "notes.txt").write_text("not an image\n")
    return directory


def predict_url(server: ServerProcess, model: str) -> str:
    return f"{server.url}/v1/models/{model}:predict"


def json_answer(server: ServerProcess, model: str, images: list[bytes], **fields: object) -> list[dict]:
    """The v1 JSON answer for the same content: the reference every upload must match."""
    text = {name: value for name, value in fields.items() if name in ("hypothesis", "premise")}
    parameters = {name: value for name, value in fields.items() if name not in text}
    instances = [{"image": {"b64": base64.b64encode(image).decode()}, **text} for image in images]
    response = httpx.post(predict_url(server, model), json={"instances": instances, "parameters": parameters},
                          timeout=300)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def assert_same_predictions(answer: list[dict], expected: list[dict]) -> None:
    assert len(answer) == len(expected)
    for got, want in zip(answer, expected, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            if key == "scores" or isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6)
            elif key != "image":  # the encoded image itself: its size and quality are compared
                assert got[key] == value, key


def curl(*args: str, cwd: Path) -> tuple[int, dict[str, str], bytes]:
    """Runs curl; (status, response headers, body)."""
    result = subprocess.run(["curl", "-s", "-D", "-", *args], cwd=cwd, capture_output=True, timeout=300,
                            check=True)
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {key.lower(): value.strip() for key, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


# ---- every model, both forms, both clients -------------------------------------------------------------


@pytest.mark.parametrize("model", CLASSIFIERS)
def test_classifiers_answer_uploads_as_json(server, pictures: Path, model: str) -> None:
    expected = json_answer(server, model, [CAT, DOG], top_k=3)
    status, _, body = curl(predict_url(server, model), "-F", "image=@cat.jpg", "-F", "image=@dog.png",
                           "-F", "top_k=3", cwd=pictures)
    assert status == 200, body
    assert_same_predictions(json.loads(body)["predictions"], expected)
    response = httpx.post(predict_url(server, model), files=[("image", ("cat.jpg", CAT)), ("image", ("dog", DOG))],
                          data={"top_k": "3"}, timeout=300)
    assert response.status_code == 200, response.text
    assert_same_predictions(response.json()["predictions"], expected)
    status, _, body = curl(f"{predict_url(server, model)}?top_k=3", "--data-binary", "@cat.jpg",
                           "-H", "Content-Type: image/jpeg", cwd=pictures)
    assert status == 200, body
    assert_same_predictions(json.loads(body)["predictions"], expected[:1])
    response = httpx.post(predict_url(server, model), params={"top_k": 3}, content=DOG,
                          headers={"content-type": "image/png"}, timeout=300)
    assert response.status_code == 200, response.text
    assert_same_predictions(response.json()["predictions"], expected[1:])


def test_visual_entailment_takes_its_text_fields_with_the_image(server, pictures: Path) -> None:
    expected = json_answer(server, ENTAILMENT, [CAT, DOG], hypothesis=HYPOTHESIS, premise="a photo")
    status, _, body = curl(predict_url(server, ENTAILMENT), "-F", "image=@cat.jpg", "-F", "image=@dog.png",
                           "-F", f"hypothesis={HYPOTHESIS}", "-F", "premise=a photo", cwd=pictures)
    assert status == 200, body
    assert_same_predictions(json.loads(body)["predictions"], expected)
    response = httpx.post(predict_url(server, ENTAILMENT), params={"hypothesis": HYPOTHESIS, "premise": "a photo"},
                          content=CAT, headers={"content-type": "image/jpeg"}, timeout=300)
    assert response.status_code == 200, response.text
    assert_same_predictions(response.json()["predictions"], expected[:1])
    # one image, one hypothesis per instance
    pairs = httpx.post(predict_url(server, ENTAILMENT), files=[("image", ("cat.jpg", CAT))],
                       data={"hypothesis": [HYPOTHESIS, "a car on a road"]}, timeout=300)
    assert pairs.status_code == 200, pairs.text
    assert_same_predictions(pairs.json()["predictions"],
                            json_answer(server, ENTAILMENT, [CAT], hypothesis=HYPOTHESIS)
                            + json_answer(server, ENTAILMENT, [CAT], hypothesis="a car on a road"))


def test_face_enhancement_answers_uploads_as_json(server, pictures: Path) -> None:
    expected = json_answer(server, FACE, [FACE_IMAGE], output_format="png", require_face=False)
    status, _, body = curl(predict_url(server, FACE), "-F", "image=@face.jpg", "-F", "output_format=png",
                           "-F", "require_face=false", cwd=pictures)
    assert status == 200, body
    answer = json.loads(body)["predictions"]
    assert_same_predictions(answer, expected)
    assert Image.open(io.BytesIO(base64.b64decode(answer[0]["image"]["b64"]))).format == "PNG"


# ---- the image answer ------------------------------------------------------------------------------------


def test_accept_image_returns_the_enhanced_image_with_its_scores_as_headers(server, pictures: Path) -> None:
    expected = json_answer(server, FACE, [FACE_IMAGE])[0]
    out = pictures / "enhanced.jpg"
    status, headers, _ = curl(predict_url(server, FACE), "-F", "image=@face.jpg", "-H", "Accept: image/jpeg",
                              "-o", str(out), cwd=pictures)
    assert status == 200 and headers["content-type"] == "image/jpeg"
    with Image.open(out) as image:
        assert image.format == "JPEG" and image.size == (expected["width"], expected["height"])
    assert float(headers["x-quality-score"]) == pytest.approx(expected["quality_score"], rel=1e-6)
    assert headers["x-needs-review"] == json.dumps(expected["needs_review"])
    assert int(headers["x-faces"]) == expected["faces"]
    assert headers["x-request-id"]
    # a raw body, image/png asked for: the model is told to encode PNG
    response = httpx.post(predict_url(server, FACE), content=FACE_IMAGE,
                          headers={"content-type": "image/jpeg", "accept": "image/png"}, timeout=300)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).format == "PNG"


@pytest.mark.parametrize(("model", "images", "accept", "fields", "message"), [
    (FACE, 2, "image/*", {}, "holds 2 items"),
    ("image-classification", 1, "image/jpeg", {}, "answers application/json only"),
    (FACE, 1, "image/webp", {}, "names no image type this model makes"),
    (FACE, 1, "image/jpeg", {"output_format": "png"}, "does not take"),
])
def test_an_image_answer_that_cannot_be_had_is_406(server, model: str, images: int, accept: str, fields: dict,
                                                     message: str) -> None:
    response = httpx.post(predict_url(server, model), files=[("image", ("f.jpg", FACE_IMAGE))] * images,
                          data=fields, headers={"accept": accept}, timeout=300)
    assert message in assert_error(response, 406, "NOT_ACCEPTABLE")["error"]


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, image/*"])
def test_json_stays_the_default_answer(server, accept: str | None) -> None:
    response = httpx.post(predict_url(server, "image-classification"), content=CAT,
                          headers={"content-type": "image/jpeg", **({"accept": accept} if accept else {})},
                          timeout=300)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert len(response.json()["predictions"]) == 1


# ---- limits and refusals -----------------------------------------------------------------------------


def chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    """`total` bytes of a multipart body's image part, streamed without a Content-Length."""
    yield b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.jpg\"\r\n\r\n"
    for _ in range(total // size + 1):
        yield b"\xff" * size


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=b", "image/jpeg"])
def test_a_body_over_max_body_bytes_is_413_while_streaming(server, content_type: str) -> None:
    response = httpx.post(predict_url(server, "image-classification"), content=chunks(MAX_BODY + 1),
                          headers={"content-type": content_type}, timeout=300)
    assert "content-length" not in response.request.headers  # chunked: only counting can stop it
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    declared = httpx.post(predict_url(server, "image-classification"), content=b"\xff" * (MAX_BODY + 1),
                          headers={"content-type": content_type}, timeout=300)
    assert_error(declared, 413, "PAYLOAD_TOO_LARGE")


def test_too_many_images_get_the_code_json_gets(server) -> None:
    too_many = MAX_ITEMS + 1
    as_json = httpx.post(predict_url(server, "image-classification"), timeout=300, json={
        "instances": [{"image": {"b64": base64.b64encode(CAT).decode()}}] * too_many})
    upload = httpx.post(predict_url(server, "image-classification"), files=[("image", ("c.jpg", CAT))] * too_many,
                        timeout=300)
    assert assert_error(upload, 400, "INVALID_INPUT")["code"] == assert_error(as_json, 400, "INVALID_INPUT")["code"]
    assert f"{too_many} instances in one request; the limit is {MAX_ITEMS}" in upload.json()["error"]


@pytest.mark.parametrize("model", MODELS)
def test_a_bad_image_is_invalid_image_in_either_form(server, pictures: Path, model: str) -> None:
    hypothesis = ["-F", f"hypothesis={HYPOTHESIS}"] if model == ENTAILMENT else []
    status, _, body = curl(predict_url(server, model), "-F", "image=@notes.txt", *hypothesis, cwd=pictures)
    assert (status, json.loads(body)["code"]) == (400, "INVALID_IMAGE")
    query = f"?hypothesis={HYPOTHESIS.replace(' ', '%20')}" if model == ENTAILMENT else ""
    if model != FACE:  # (a GPEN pass spared) the stated type is a hint: the bytes are what is decoded
        status, _, body = curl(predict_url(server, model) + query, "--data-binary", "@cat.jpg", "-H",
                               "Content-Type: image/png", cwd=pictures)
        assert status == 200, body
    truncated = httpx.post(predict_url(server, model) + query, content=CAT[: len(CAT) // 2],
                           headers={"content-type": "image/jpeg"}, timeout=300)
    assert_error(truncated, 400, "INVALID_IMAGE")


@pytest.mark.parametrize(("fields", "message"), [
    ({"top": "3"}, "unknown form field(s) ['top']"),
    ({"top_k": "three"}, "parameters.top_k"),
    ({"top_k": "true"}, "parameters.top_k"),
    ({"timeout_ms": "-5"}, "timeout_ms must be a positive"),
])
def test_unknown_or_mistyped_form_fields_are_invalid_input(server, fields: dict, message: str) -> None:
    response = httpx.post(predict_url(server, "general-recognition"), files=[("image", ("c.jpg", CAT))], data=fields,
                          timeout=300)
    assert message in assert_error(response, 400, "INVALID_INPUT")["error"]


def test_malformed_multipart_is_invalid_input(server) -> None:
    url = predict_url(server, "general-recognition")
    for content_type, body in [("multipart/form-data", b"--b\r\n"),
                               ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; "
                                                                   b"name=\"image\"\r\n\r\n" + CAT),
                               ("multipart/form-data; boundary=b", b"no boundary here")]:
        assert_error(httpx.post(url, content=body, headers={"content-type": content_type}, timeout=60), 400,
                     "INVALID_INPUT")


@pytest.mark.parametrize("content_type", ["image/gif", "image/svg+xml", "multipart/mixed; boundary=b", "text/plain",
                                          "application/octet-stream"])
def test_a_content_type_the_route_does_not_take_is_415(server, content_type: str) -> None:
    response = httpx.post(predict_url(server, "image-classification"), content=CAT,
                          headers={"content-type": content_type}, timeout=60)
    assert "is not accepted here" in assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")["error"]


def test_an_image_sent_without_its_type_says_how_to_send_it(server, pictures: Path) -> None:
    status, _, body = curl(predict_url(server, "image-classification"), "--data-binary", "@cat.jpg", cwd=pictures)
    answer = json.loads(body)
    assert (status, answer["code"]) == (400, "INVALID_INPUT")
    assert "to send an image, state its Content-Type (image/jpeg ...)" in answer["error"]


def test_the_server_is_unharmed(server) -> None:
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
    assert "Traceback" not in server.log()
