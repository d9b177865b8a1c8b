"""Images by URL end to end: off on the suite's usual server (400 IMAGE_URL_REFUSED), and on a server that allows one
loopback image server explicitly (its URL prefix, plain http, 127.0.0.1/32), over every way a request can name an
image by URL: v1 JSON, the `image_url` form field, the v2 `image_url` input (REST JSON and binary) and gRPC. The
SSRF cases themselves are in tests/unit/server/test_image_urls.py, against the same fetcher."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.support.image_server import ImageServer, image_server
from tests.support.server import ServerProcess, run_server

MODEL = "image-classification"


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    with image_server() as server:
        yield server


@pytest.fixture(scope="module")
def url_server(demo_repository: Path, images: ImageServer,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("image-urls") / "server.log"
    with run_server(["--model-repository", str(demo_repository), "--models", MODEL,
                     "--image-url-allow", f"{images.base}/public/,{images.base}/redirect",
                     "--image-url-allow-http", "--image-url-allow-networks", "127.0.0.1/32",
                     "--image-url-timeout-seconds", "2", "--image-url-max-bytes", "200000"],
                    log, wait_for=[MODEL]) as process:
        yield process


def v1(server: ServerProcess, url: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{MODEL}:predict", timeout=60,
                      json={"instances": [{"image": {"url": url}}], "parameters": {"top_k": 2}})


def test_off_by_default(server: ServerProcess, images: ImageServer) -> None:
    response = httpx.post(f"{server.url}/v1/models/{MODEL}:predict", timeout=60,
                          json={"instances": [{"image": {"url": f"{images.base}/public/image.png"}}]})
    assert response.status_code == 400 and response.json()["code"] == "IMAGE_URL_REFUSED"
    assert "off on this server" in response.json()["error"]


def test_every_way_to_name_an_image_by_url(url_server: ServerProcess, images: ImageServer) -> None:
    url = f"{images.base}/public/image.png"
    inline = httpx.post(f"{url_server.url}/v1/models/{MODEL}:predict", files={"image": images.image},
                        data={"top_k": "2"}, timeout=60).json()["predictions"]
    by_json = v1(url_server, url)
    assert by_json.status_code == 200, by_json.text
    assert by_json.json()["predictions"] == inline
    by_form = httpx.post(f"{url_server.url}/v1/models/{MODEL}:predict", timeout=60,
                         files={"image_url": (None, url.encode()), "top_k": (None, b"2")})
    assert by_form.status_code == 200, by_form.text
    assert by_form.json()["predictions"] == inline
    v2 = httpx.post(f"{url_server.url}/v2/models/{MODEL}/infer", timeout=60, json={
        "inputs": [{"name": "image_url", "datatype": "BYTES", "shape": [2], "data": [url, url]}],
        "parameters": {"top_k": 2}})
    assert v2.status_code == 200, v2.text
    labels = {o["name"]: o for o in v2.json()["outputs"]}["labels"]
    assert labels["shape"] == [2, 2] and labels["data"][:2] == inline[0]["labels"]
    encoded = url.encode()
    raw = struct.pack("<I", len(encoded)) + encoded
    header = json.dumps({"inputs": [{"name": "image_url", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    binary = httpx.post(f"{url_server.url}/v2/models/{MODEL}/infer", content=header + raw, timeout=60,
                        headers={"Inference-Header-Content-Length": str(len(header))})
    assert binary.status_code == 200, binary.text
    grpc = grpcclient.InferenceServerClient(url_server.grpc_target)
    try:
        tensor = grpcclient.InferInput("image_url", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([encoded], dtype=object))
        result = grpc.infer(MODEL, [tensor], parameters={"top_k": 2})
    finally:
        grpc.close()
    assert [x.decode() for x in result.as_numpy("labels")[0]] == inline[0]["labels"]


@pytest.mark.parametrize(("path", "code", "status"), [
    ("/image.png", "IMAGE_URL_REFUSED", 400),  # not under the allowed prefix
    ("/public/../image.png", "IMAGE_URL_REFUSED", 400),
    ("/redirect?to=http://169.254.169.254/latest/meta-data/", "IMAGE_URL_REFUSED", 400),
    ("/redirect?to=http://localhost:{port}/public/image.png", "IMAGE_URL_REFUSED", 400),
    ("/redirect?to=/loop", "IMAGE_URL_REFUSED", 400),  # /loop is not allowed
    ("/public/missing", "IMAGE_URL_FAILED", 502),
    ("/redirect?to=/public/image.png", None, 200),
])
def test_allowed_and_refused_urls(url_server: ServerProcess, images: ImageServer, path: str, code: str | None,
                                  status: int) -> None:
    response = v1(url_server, images.base + path.format(port=images.port))
    assert response.status_code == status, response.text
    if code:
        assert response.json()["code"] == code


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://127.0.0.1:1/public/x.png",
                                 "http://[::1]:{port}/public/image.png", "http://2130706433:{port}/public/image.png",
                                 "http://user@127.0.0.1:{port}/public/image.png", "gopher://127.0.0.1:{port}/_x"])
def test_ssrf_tricks_over_the_wire(url_server: ServerProcess, images: ImageServer, url: str) -> None:
    response = v1(url_server, url.format(port=images.port))
    assert response.status_code == 400 and response.json()["code"] == "IMAGE_URL_REFUSED", response.text


@pytest.mark.parametrize(("path", "code", "status"), [
    ("/public/text", "INVALID_IMAGE", 400),  # the same checks as an upload
    ("/public/stream?bytes=300000", "IMAGE_URL_TOO_LARGE", 413),
    ("/public/big", "IMAGE_URL_TOO_LARGE", 413),
    ("/public/slow?seconds=6", "IMAGE_URL_FAILED", 502),
    ("/public/gzip?bytes=50000000", "INVALID_IMAGE", 400),
])
def test_what_is_fetched_gets_the_upload_checks_and_limits(url_server: ServerProcess, images: ImageServer,
                                                           path: str, code: str, status: int) -> None:
    response = httpx.post(f"{url_server.url}/v2/models/{MODEL}/infer", timeout=60, json={
        "inputs": [{"name": "image_url", "datatype": "BYTES", "shape": [1], "data": [images.base + path]}]})
    assert response.status_code == status and response.json()["code"] == code, response.text


def test_the_openapi_document_says_images_by_url_are_on(url_server: ServerProcess) -> None:
    document = httpx.get(f"{url_server.url}/openapi.json").json()
    form = document["paths"][f"/v1/models/{MODEL}:predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert "image_url" in form["schema"]["properties"]
