"""The client SDK (`predictors_client`) and `predictors infer` against the real server process.

One server serves every model kind on demo weights, plus `face-noface` (a detector that never finds a
face, for FACE_NOT_FOUND) and `picky-classifier` (a user's TorchScript classifier that raises on bright
images, for a real 500 INTERNAL_ERROR). `--max-queue 8` makes a 9-image request a real 503 SERVICE_BUSY
with Retry-After; `--max-body-bytes 1 MiB` makes PAYLOAD_TOO_LARGE cheap. The server logs JSON, so the
access log shows every attempt the client made, with its request id.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from predictors_client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    EnhancedFace,
    Entailment,
    FaceNotFound,
    ImageTooLarge,
    InternalError,
    InvalidImage,
    InvalidInput,
    Labels,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
    PredictorError,
    RetryPolicy,
    ServiceBusy,
    Timeout,
    UnexpectedResponse,
)

from predictors.models.demo import make_demo_repository
from predictors.models.face_enhancement import demo as face_enhancement
from predictors.models.visual_entailment import demo as visual_entailment
from tests.conftest import encode, sample_image
from tests.integration.test_errors import bomb_png
from tests.support.server import ServerProcess, free_port, run_server

REPO = Path(__file__).resolve().parents[2]
FACE, NO_FACE, PICKY = "face-enhancement", "face-noface", "picky-classifier"
CLASSES = ["entailment", "contradiction", "neutral"]
JPEG = encode(sample_image(1, (320, 240)), "JPEG")
IMAGES = [encode(sample_image(seed, (200, 160)), "JPEG") for seed in (2, 3, 4)]
FACE_PNG = encode(sample_image(21, (16, 16)), "PNG")  # 16 px: a GPEN pass on a 2-core CPU costs seconds
WHITE = encode(Image.new("RGB", (64, 64), (255, 255, 255)), "PNG")
MAX_QUEUE = 8
SLOW = 300.0  # seconds: the deadline of calls that may wait for a face pass on a busy machine


def write_picky_classifier(directory: Path) -> Path:
    """A TorchScript classifier that fails at run time on bright images (a bug in a user's model)."""
    import torch

    class Picky(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if bool(x.mean() > 2.0):  # a white image normalises to ~2.4, the grey warm-up image to ~0
                raise RuntimeError("this classifier cannot take bright images")
            return torch.zeros(x.shape[0], 2)

    directory.mkdir(parents=True)
    torch.jit.save(torch.jit.script(Picky()), str(directory / "model.pt"))
    (directory / "labels.txt").write_text("dark\nlight\n")
    (directory / "predictor.json").write_text(json.dumps({"predictor": "image-classification"}))
    return directory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("sdk-server")
    make_demo_repository(root, ["general-recognition", "image-classification"])
    model_dirs = {
        "general-recognition": root / "general-recognition",
        "image-classification": root / "image-classification",
        FACE: face_enhancement.write(root / "gpen-one-face", seed=0),
        NO_FACE: face_enhancement.write(root / "gpen-no-face", seed=1, detector="none"),
        "visual-entailment": visual_entailment.write(root / "ofa", seed=1, patch_image_size=256),
        PICKY: write_picky_classifier(root / "picky"),
    }
    cache = root / "modelscope-cache"
    cache.mkdir()
    args = ["--device", "cpu", "--max-queue", str(MAX_QUEUE), "--max-body-bytes", str(1024 * 1024),
            "--log-format", "json", "--max-latency-ms", "5", "--shutdown-grace-seconds", "5"]
    for name, directory in model_dirs.items():
        args += ["--model-dir", f"{name}={directory}"]
    # Console traces: the server joins the caller's trace, and the access log shows the trace id.
    env = {"MODELSCOPE_CACHE": str(cache), "OTEL_TRACES_EXPORTER": "console"}
    with run_server(args, root / "server.log", env=env, wait_for=list(model_dirs), timeout=900) as process:
        yield process


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url, timeout=SLOW) as client:
        yield client


def access_lines(server: ServerProcess, request_id: str, count: int = 1, timeout: float = 10.0,
                 until: Callable[[list[dict]], bool] = lambda lines: True) -> list[dict]:
    """The server's access-log lines of one request id (waits until `count` are written and `until` holds:
    a line is written once its answer has been sent, so a client can hold the answer before the line)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = []
        for raw in server.log().splitlines():
            if raw.startswith("{") and request_id in raw:
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                if line.get("logger") == "predictors.access" and line.get("request_id") == request_id:
                    lines.append(line)
        if (len(lines) >= count and until(lines)) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def v1_prediction(server: ServerProcess, model: str, instance: dict[str, Any], **parameters: Any) -> dict:
    """The reference answer, over the other protocol (v1 JSON with base64)."""
    body = {"instances": [instance], "parameters": parameters}
    response = httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=SLOW)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


# ---- every model, sync and async, binary and JSON ------------------------------------------------


@pytest.mark.parametrize("protocol", ["binary", "json"])
def test_recognize_matches_v1_for_every_kind_of_image_input(server: ServerProcess, protocol: str,
                                                            tmp_path: Path) -> None:
    reference = v1_prediction(server, "general-recognition", {"image": b64(JPEG)}, top_k=3)
    path = tmp_path / "cat.jpg"
    path.write_bytes(JPEG)
    with Client(server.url, protocol=protocol) as client:
        answers = [client.recognize(str(path), top_k=3), client.recognize(path, top_k=3),
                   client.recognize(JPEG, top_k=3), client.recognize(io.BytesIO(JPEG), top_k=3)]
        with open(path, "rb") as file:
            answers.append(client.recognize(file, top_k=3))
        # a PIL image travels as PNG: the same pixels as the decoded JPEG
        pil = client.recognize(Image.open(io.BytesIO(JPEG)), top_k=3)
    for answer in answers:
        assert isinstance(answer, Labels)
        assert answer.labels == reference["labels"]
        assert answer.scores == pytest.approx(reference["scores"], abs=1e-6)
    assert pil.labels == reference["labels"]
    assert pil.scores == pytest.approx(reference["scores"], abs=1e-4)


def test_a_list_is_one_batched_request(server: ServerProcess, client: Client) -> None:
    singles = [client.classify(image, top_k=4) for image in IMAGES]
    batch = client.classify(IMAGES, top_k=4, request_id="sdk-batch-1")
    assert isinstance(batch, list) and len(batch) == len(IMAGES)
    for one, single in zip(batch, singles, strict=True):
        assert one.labels == single.labels and len(one.labels) == 4
        assert one.scores == pytest.approx(single.scores, abs=1e-5)
    (line,) = access_lines(server, "sdk-batch-1")
    assert (line["items"], line["protocol"], line["status"]) == (len(IMAGES), "v2", 200)


def test_classify_a_named_model_and_default_top_k(server: ServerProcess, client: Client) -> None:
    reference = v1_prediction(server, "image-classification", {"image": b64(JPEG)})
    answer = client.classify(JPEG, model="image-classification")
    assert answer.labels == reference["labels"] and len(answer.labels) == 5


@pytest.fixture(scope="module")
def face_reference(server: ServerProcess) -> dict:
    """The v1 answer for FACE_PNG (a GPEN pass costs seconds here: made once)."""
    return v1_prediction(server, FACE, {"image": b64(FACE_PNG)}, output_format="png")


def check_face(face: EnhancedFace, reference: dict) -> None:
    assert isinstance(face, EnhancedFace)
    assert (face.format, face.width, face.height, face.faces) == ("png", 32, 32, 1)
    assert face.image_bytes == base64.b64decode(reference["image"]["b64"])
    assert face.quality_score == pytest.approx(reference["quality_score"], abs=1e-6)
    assert face.needs_review is reference["needs_review"] is (face.quality_score < 0.5)


@pytest.mark.parametrize("protocol", ["binary", "json"])
def test_enhance_face(server: ServerProcess, face_reference: dict, protocol: str, tmp_path: Path) -> None:
    with Client(server.url, timeout=SLOW, protocol=protocol) as client:
        face = client.enhance_face(FACE_PNG, output_format="png")
    check_face(face, face_reference)
    saved = face.save(tmp_path / "enhanced.png")
    assert Image.open(saved).size == (32, 32)


def test_enhance_face_parameters_and_batch(client: Client) -> None:
    pictures = [encode(sample_image(seed, (30, 14)), "PNG") for seed in (5, 6)]
    faces = client.enhance_face(pictures, model=NO_FACE, require_face=False, upscale=False, output_format="jpeg",
                                jpeg_quality=80)
    assert [(f.format, f.width, f.height, f.faces) for f in faces] == [("jpeg", 30, 14, 0)] * 2
    assert Image.open(io.BytesIO(faces[0].image_bytes)).size == (30, 14)
    upscaled = client.enhance_face(pictures[0], model=NO_FACE, require_face=False)
    assert (upscaled.format, upscaled.width, upscaled.height) == ("jpeg", 60, 28)  # the server's defaults


@pytest.mark.parametrize("protocol", ["binary", "json"])
def test_entails(server: ServerProcess, protocol: str) -> None:
    hypotheses = ["a man is playing with a ball", "two dogs", "a red car"]
    premises = ["a dog runs on the grass", "a picture", "people in a car"]
    references = [v1_prediction(server, "visual-entailment", {"image": b64(image), "hypothesis": h, "premise": p})
                  for image, h, p in zip(IMAGES, hypotheses, premises, strict=True)]
    with Client(server.url, timeout=SLOW, protocol=protocol) as client:
        batch = client.entails(IMAGES, hypotheses, premises)
        one = client.entails(IMAGES[0], hypotheses[0])
        same_hypothesis = client.entails(IMAGES[:2], "a cat")
    for answer, reference in zip(batch, references, strict=True):
        assert isinstance(answer, Entailment)
        assert answer.label == reference["label"] and list(answer.scores) == CLASSES
        assert answer.scores == pytest.approx(reference["scores"], abs=1e-5)
        assert max(answer.scores, key=answer.scores.__getitem__) == answer.label
    alone = v1_prediction(server, "visual-entailment", {"image": b64(IMAGES[0]), "hypothesis": hypotheses[0]})
    assert one.label == alone["label"] and one.scores == pytest.approx(alone["scores"], abs=1e-5)
    assert len(same_hypothesis) == 2


def test_generic_infer_returns_the_tensors(client: Client) -> None:
    result = client.infer("visual-entailment", {"image": [IMAGES[0], IMAGES[1]], "hypothesis": ["a cat", "a dog"]})
    assert list(result.outputs) == ["label", "scores"]
    scores = result["scores"]
    assert (scores.datatype, scores.shape) == ("FP32", [2, 3])
    assert scores.parameters["element_names"] == ",".join(CLASSES)
    assert scores.as_numpy().shape == (2, 3)
    assert [label.decode() for label in result["label"].data] == [
        e.label for e in client.entails(IMAGES[:2], ["a cat", "a dog"])]
    labels = client.infer("general-recognition", {"image": JPEG}, {"top_k": 2})
    assert labels["labels"].shape == [1, 2] and labels["scores"].rows()[0] == pytest.approx(
        client.recognize(JPEG, top_k=2).scores)


def test_metadata(client: Client) -> None:
    metadata = client.metadata(FACE)
    assert [output["name"] for output in metadata["outputs"]][:2] == ["image", "faces"]


def test_async_client_every_model(server: ServerProcess, face_reference: dict) -> None:
    async def calls() -> tuple[Any, ...]:
        async with AsyncClient(server.url, timeout=SLOW) as client:
            return await asyncio.gather(
                client.recognize(JPEG, top_k=3),
                client.classify(IMAGES, top_k=2),
                client.enhance_face(FACE_PNG, output_format="png"),
                client.entails(IMAGES[0], "a cat", premise="a picture"),
                client.infer("image-classification", {"image": [JPEG]}, {"top_k": 1}),
                client.metadata("visual-entailment"),
            )

    recognized, classified, face, entailment, generic, metadata = asyncio.run(calls())
    with Client(server.url, timeout=SLOW) as sync:
        assert recognized == sync.recognize(JPEG, top_k=3)
        assert [c.labels for c in classified] == [c.labels for c in sync.classify(IMAGES, top_k=2)]
        assert entailment.label == sync.entails(IMAGES[0], "a cat", premise="a picture").label
    check_face(face, face_reference)
    assert generic["labels"].shape == [1, 1]
    assert metadata["name"] == "visual-entailment"


# ---- errors: each class from a real bad request ----------------------------------------------------


def assert_raises(call: Any, error_class: type[PredictorError], code: str, status: int | None,
                  request_id: str | None = None) -> PredictorError:
    with pytest.raises(error_class) as caught:
        call()
    error = caught.value
    assert type(error) is error_class
    assert (error.code, error.status) == (code, status)
    assert error.message and error.request_id
    if request_id is not None:
        assert error.request_id == request_id
    return error


def test_every_server_error_code_becomes_its_exception(server: ServerProcess, client: Client) -> None:
    assert_raises(lambda: client.recognize(JPEG, top_k=0, request_id="e-input"), InvalidInput, "INVALID_INPUT",
                  400, "e-input")
    assert_raises(lambda: client.recognize(b"\x89PNG\r\n\x1a\n not an image"), InvalidImage, "INVALID_IMAGE", 400)
    assert_raises(lambda: client.recognize(b"\0" * (1024 * 1024 + 1)), PayloadTooLarge, "PAYLOAD_TOO_LARGE", 413)
    assert_raises(lambda: client.recognize(bomb_png()), ImageTooLarge, "IMAGE_TOO_LARGE", 413)
    assert_raises(lambda: client.classify(JPEG, model="no-such-model"), ModelNotFound, "MODEL_NOT_FOUND", 404)
    assert_raises(lambda: client.enhance_face(FACE_PNG, model=NO_FACE), FaceNotFound, "FACE_NOT_FOUND", 422)
    assert_raises(lambda: client.entails(JPEG, "x" * 5000), InvalidInput, "INVALID_INPUT", 400)
    # the server's deadline, given as its timeout_ms parameter: 504 from the server itself
    assert_raises(lambda: client.infer("image-classification", {"image": IMAGES}, {"timeout_ms": 1}),
                  Timeout, "TIMEOUT", 504)
    error = assert_raises(lambda: client.classify(WHITE, model=PICKY, request_id="e-internal"), InternalError,
                          "INTERNAL_ERROR", 500, "e-internal")
    assert "bright" not in error.message  # the server keeps the cause in its log
    busy = assert_raises(lambda: client.classify([JPEG] * (MAX_QUEUE + 1), request_id="e-busy"), ServiceBusy,
                         "SERVICE_BUSY", 503, "e-busy")
    assert busy.retry_after is not None and busy.retry_after >= 1


def test_no_retry_on_4xx_or_500(server: ServerProcess) -> None:
    with Client(server.url, retries=5) as client:
        for request_id, call in [
            ("no-retry-400", lambda rid: client.recognize(b"garbage", request_id=rid)),
            ("no-retry-404", lambda rid: client.recognize(JPEG, model="nope", request_id=rid)),
            ("no-retry-422", lambda rid: client.enhance_face(FACE_PNG, model=NO_FACE, request_id=rid)),
            ("no-retry-500", lambda rid: client.classify(WHITE, model=PICKY, request_id=rid)),
        ]:
            with pytest.raises(PredictorError):
                call(request_id)
            time.sleep(0.5)  # a retry, were there one, would have been logged by now
            assert len(access_lines(server, request_id, count=2, timeout=1.0)) == 1, request_id


class _PageOnly(http.server.SimpleHTTPRequestHandler):
    """Python's file server: its answer to a POST is an HTML page (501)."""

    def log_message(self, *args: object) -> None:
        pass


def test_unknown_codes_and_non_json_answers(server: ServerProcess) -> None:
    # A code this client does not know (here the server's NOT_FOUND for an unknown route): the base class.
    with Client(server.url + "/not-a-prefix") as client:
        error = assert_raises(lambda: client.recognize(JPEG), PredictorError, "NOT_FOUND", 404)
    # A server that answers with a page of its own (a proxy, a wrong port): no crash, UnexpectedResponse.
    page_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageOnly)
    thread = threading.Thread(target=page_server.serve_forever, daemon=True)
    thread.start()
    try:
        with Client(f"http://127.0.0.1:{page_server.server_address[1]}", retries=0) as client:
            error = assert_raises(lambda: client.recognize(JPEG, request_id="page-1"), UnexpectedResponse,
                                  "UNEXPECTED_RESPONSE", 501, "page-1")
    finally:
        page_server.shutdown()
        page_server.server_close()
    assert "501" in error.message


# ---- retries, deadlines, request ids -----------------------------------------------------------


def test_busy_is_retried_after_retry_after_with_the_same_request_id(server: ServerProcess) -> None:
    """9 images on a queue of 8 are refused every time: the client retries after each Retry-After (1 s)
    until its deadline leaves no room for another wait, then raises the last ServiceBusy."""
    started = time.monotonic()
    with Client(server.url, timeout=3.5, retries=10) as client, pytest.raises(ServiceBusy) as caught:
        client.classify([JPEG] * (MAX_QUEUE + 1), request_id="busy-retried")
    elapsed = time.monotonic() - started
    assert caught.value.request_id == "busy-retried" and caught.value.retry_after == 1
    attempts = access_lines(server, "busy-retried", count=3)
    assert len(attempts) >= 3
    assert {(a["status"], a["code"]) for a in attempts} == {(503, "SERVICE_BUSY")}
    times = [datetime.datetime.fromisoformat(a["time"]).timestamp() for a in attempts]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert all(1.0 <= gap < 2.0 for gap in gaps), gaps  # Retry-After (1 s) honoured, plus jitter and latency
    assert elapsed < 3.5 + 0.5  # within the deadline: no wait the deadline could not afford


def test_connection_failures_are_retried_then_raised() -> None:
    sent: list[str] = []

    def record(request: httpx.Request) -> None:
        sent.append(request.headers["x-request-id"])

    policy = RetryPolicy(retries=3, backoff_base=0.05)
    with Client(f"http://127.0.0.1:{free_port()}", retry_policy=policy, event_hooks={"request": [record]}) as client:
        error = assert_raises(lambda: client.recognize(JPEG, request_id="refused-1"), ConnectionFailed,
                              "CONNECTION_FAILED", None, "refused-1")
    assert sent == ["refused-1"] * 4
    assert isinstance(error, ConnectionError)


def test_model_not_ready_then_answered_with_the_same_request_id(tmp_path: Path) -> None:
    """A client started with the server: connection refused, then 503 MODEL_NOT_READY while the model loads
    and warms up, then the answer; one request id throughout. Meanwhile a client without retries sees
    the ModelNotReady exception."""
    root = tmp_path / "models"
    make_demo_repository(root, ["general-recognition"])
    policy = RetryPolicy(retries=10_000, backoff_base=0.05, backoff_max=0.2)
    with run_server(["--model-repository", str(root), "--log-format", "json"], tmp_path / "log",
                    wait_for=()) as server, concurrent.futures.ThreadPoolExecutor(1) as pool:
        with Client(server.url, timeout=240, retry_policy=policy) as client:
            waiting = pool.submit(client.recognize, JPEG, top_k=2, request_id="wait-for-ready")
            not_ready = None
            with Client(server.url, retries=0, timeout=10) as impatient:
                deadline = time.monotonic() + 180
                while not_ready is None and not waiting.done() and time.monotonic() < deadline:
                    try:
                        impatient.recognize(JPEG)
                    except ConnectionFailed:
                        time.sleep(0.05)
                    except ModelNotReady as error:
                        not_ready = error
            answer = waiting.result(timeout=240)
        assert len(answer.labels) == 2
        assert not_ready is not None, "the model was ready before a request saw it loading"
        assert (not_ready.code, not_ready.status) == ("MODEL_NOT_READY", 503) and not_ready.request_id
        attempts = access_lines(server, "wait-for-ready", until=lambda lines: lines[-1]["code"] == "OK")
        codes = [a["code"] for a in attempts]
        assert codes[-1] == "OK" and set(codes) == {"MODEL_NOT_READY", "OK"}, codes


def test_timeout_ms_is_the_servers_deadline_too(server: ServerProcess, client: Client) -> None:
    started = time.monotonic()
    with pytest.raises(Timeout) as caught:  # six ResNeSt-101 passes take longer on a CPU (and fit the queue)
        client.recognize(IMAGES * 2, timeout_ms=300, request_id="deadline-1")
    assert time.monotonic() - started < 2.0
    assert caught.value.request_id == "deadline-1"
    # the server was told the deadline (it answers 504 or drops the work), never runs past it for us
    (line,) = access_lines(server, "deadline-1", timeout=30)
    assert line["code"] == "TIMEOUT" or line["status"] in (499, 504), line


def test_the_deadline_bounds_a_server_that_never_answers() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        started = time.monotonic()
        with Client(f"http://127.0.0.1:{port}", timeout=1.0) as client:
            assert_raises(lambda: client.recognize(JPEG), Timeout, "TIMEOUT", None)
        assert 1.0 <= time.monotonic() - started < 2.0


def test_traceparent_of_the_current_span_is_propagated(server: ServerProcess, client: Client) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("sdk-test")
    with tracer.start_as_current_span("caller") as span:
        client.recognize(JPEG, request_id="traced-1")
    trace_id = format(span.get_span_context().trace_id, "032x")
    (line,) = access_lines(server, "traced-1")
    assert line["trace_id"] == trace_id
    client.recognize(JPEG, request_id="untraced-1")  # no current span: the server starts a trace of its own
    (line,) = access_lines(server, "untraced-1")
    assert line["trace_id"] and line["trace_id"] != trace_id


# ---- bytes on the wire -------------------------------------------------------------------------


def test_binary_requests_carry_the_image_without_base64(server: ServerProcess) -> None:
    image = encode(sample_image(7, (640, 480)), "JPEG", quality=90)
    sizes: dict[str, int] = {}
    for protocol in ("binary", "json"):
        bodies: list[int] = []

        def record(request: httpx.Request, bodies: list[int] = bodies) -> None:
            bodies.append(len(request.content))

        with Client(server.url, protocol=protocol, event_hooks={"request": [record]}) as client:
            client.recognize(image)
        sizes[f"v2 {protocol}"] = bodies[0]
    v1 = json.dumps({"instances": [{"image": b64(image)}], "parameters": {"top_k": 5}}).encode()
    assert httpx.post(f"{server.url}/v1/models/general-recognition:predict", content=v1,
                      headers={"content-type": "application/json"}, timeout=60).status_code == 200
    sizes["v1 json"] = len(v1)
    print(f"\nrequest body bytes for one {len(image)}-byte JPEG: {sizes}")
    assert len(image) < sizes["v2 binary"] < len(image) + 300  # the image plus a small JSON header
    assert sizes["v2 json"] > len(image) * 4 / 3 and sizes["v1 json"] > len(image) * 4 / 3


# ---- predictors infer ------------------------------------------------------------------------------


def infer_cli(server_url: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "predictors", "infer", *args, "--url", server_url],
                          capture_output=True, text=True, timeout=SLOW, cwd=cwd or REPO, env=env)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-images")
    files = {"cat.jpg": JPEG, "face.png": FACE_PNG, "white.png": WHITE, "garbage.jpg": b"not an image"}
    for name, data in files.items():
        (root / name).write_bytes(data)
    return {name: root / name for name in files}


def test_cli_labels_table_and_json(server: ServerProcess, image_files: dict[str, Path]) -> None:
    reference = v1_prediction(server, "general-recognition", {"image": b64(JPEG)}, top_k=3)
    table = infer_cli(server.url, "general-recognition", str(image_files["cat.jpg"]), "--top-k", "3")
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["rank", "label", "score"] and len(rows) == 4
    assert [row.split()[1] for row in rows[1:]] == reference["labels"]
    as_json = infer_cli(server.url, "image-classification", str(image_files["cat.jpg"]), "--json", "--top-k", "2")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["labels"] == v1_prediction(
        server, "image-classification", {"image": b64(JPEG)}, top_k=2)["labels"]


def test_cli_face_enhancement_saves_the_image(server: ServerProcess, image_files: dict[str, Path],
                                              tmp_path: Path) -> None:
    result = infer_cli(server.url, FACE, str(image_files["face.png"]), "--out", str(tmp_path / "enhanced.png"),
                       "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["image"] == str(tmp_path / "enhanced.png") and summary["format"] == "png"
    assert Image.open(tmp_path / "enhanced.png").size == (summary["width"], summary["height"]) == (32, 32)
    assert summary["faces"] == 1 and 0 <= summary["quality_score"] <= 1
    # no --out: FILE-stem.enhanced.jpg in the working directory (a model without faces: no GPEN pass)
    default = infer_cli(server.url, NO_FACE, str(image_files["face.png"]), "--no-require-face", "--no-upscale",
                        cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert default.stdout.splitlines() == ["saved face.enhanced.jpg (jpeg, 16x16)",
                                           "faces 0  quality 1.000  needs review: no"]
    assert Image.open(tmp_path / "face.enhanced.jpg").format == "JPEG"


def test_cli_entailment(server: ServerProcess, image_files: dict[str, Path]) -> None:
    reference = v1_prediction(server, "visual-entailment",
                              {"image": b64(JPEG), "hypothesis": "a cat", "premise": "a picture"})
    result = infer_cli(server.url, "visual-entailment", str(image_files["cat.jpg"]), "--hypothesis", "a cat",
                       "--premise", "a picture")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"label: {reference['label']}"
    as_json = infer_cli(server.url, "visual-entailment", str(image_files["cat.jpg"]), "--hypothesis", "a cat",
                        "--premise", "a picture", "--json")
    answer = json.loads(as_json.stdout)
    assert answer["label"] == reference["label"]
    assert answer["scores"] == pytest.approx(reference["scores"], abs=1e-5)


@pytest.mark.parametrize(
    ("model", "image", "extra", "exit_code", "message"),
    [
        ("general-recognition", "garbage.jpg", [], 1, "INVALID_IMAGE (HTTP 400)"),
        ("no-such-model", "cat.jpg", [], 1, "MODEL_NOT_FOUND (HTTP 404)"),
        (NO_FACE, "face.png", [], 1, "FACE_NOT_FOUND (HTTP 422)"),
        ("visual-entailment", "cat.jpg", [], 2, "give --hypothesis"),
        ("general-recognition", "missing.jpg", [], 2, "not a readable file"),
        ("general-recognition", "cat.jpg", ["--timeout", "0.05"], 4, "TIMEOUT"),
        (PICKY, "white.png", [], 5, "INTERNAL_ERROR (HTTP 500)"),
    ],
    ids=["invalid-image", "unknown-model", "no-face", "no-hypothesis", "no-file", "deadline", "server-bug"],
)
def test_cli_errors_exit_non_zero_with_code_and_request_id(
    server: ServerProcess, image_files: dict[str, Path], model: str, image: str, extra: list[str], exit_code: int,
    message: str, tmp_path: Path,
) -> None:
    path = image_files.get(image, tmp_path / image)
    result = infer_cli(server.url, model, str(path), *extra, cwd=tmp_path)
    assert result.returncode == exit_code, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr
    if exit_code != 2:
        assert "request_id" in result.stderr


def test_cli_unreachable_server(tmp_path: Path) -> None:
    (tmp_path / "cat.jpg").write_bytes(JPEG)
    result = infer_cli(f"http://127.0.0.1:{free_port()}", "general-recognition", str(tmp_path / "cat.jpg"),
                       "--retries", "1")
    assert result.returncode == 3
    assert "CONNECTION_FAILED" in result.stderr and "request_id" in result.stderr
