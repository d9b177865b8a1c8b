"""The SDK's v2 encoding against the server's own codec: what the client sends, the server reads; what the
server sends, the client reads (binary extension and JSON)."""

from __future__ import annotations

import base64
import json

import pytest
from predictors_client.errors import UnexpectedResponse
from predictors_client.results import entailments_from, faces_from, labels_from
from predictors_client.wire import decode_response, encode_request

from predictors.codecs import v2
from predictors.codecs.images import EncodedImage
from predictors.codecs.types import InputSpec, OutputSpec, WireRequest

IMAGES = [b"\xff\xd8\xff jpeg one", b"\x89PNG\r\n\x1a\n two", b""]
TEXTS = ["a dog", "ein Hund \u00fcber", "\u72d7"]
INPUTS = (InputSpec("image", "image"), InputSpec("hypothesis", "text"))


@pytest.mark.parametrize("protocol", ["binary", "json"])
def test_the_server_reads_what_the_client_encodes(protocol: str) -> None:
    encoded = encode_request({"image": IMAGES[:2], "hypothesis": TEXTS[:2]}, {"top_k": 3}, protocol)
    if protocol == "binary":
        length = int(encoded.headers["Inference-Header-Content-Length"])
        assert encoded.headers["Content-Type"] == "application/octet-stream"
        assert IMAGES[0] in encoded.content  # raw, not base64
    else:
        length = len(encoded.content)
        assert encoded.headers["Content-Type"] == "application/json"
    request = v2.parse_binary_request(encoded.content, length, "m")
    wire = v2.decode_request(request, INPUTS, (), max_items=64)
    assert [item["image"] for item in wire.items] == IMAGES[:2]
    assert [item["hypothesis"] for item in wire.items] == TEXTS[:2]
    assert wire.parameters == {"top_k": 3}
    assert wire.binary_outputs is (protocol == "binary")


LABEL_OUTPUTS = (OutputSpec("labels", "BYTES", (2,)), OutputSpec("scores", "FP32", (2,)))
FACE_OUTPUTS = (OutputSpec("image", "BYTES"), OutputSpec("faces", "INT32"), OutputSpec("quality_score", "FP32"),
                OutputSpec("needs_review", "BOOL"), OutputSpec("width", "INT32"), OutputSpec("height", "INT32"))
ENTAILMENT_OUTPUTS = (OutputSpec("label", "BYTES"),
                      OutputSpec("scores", "FP32", (3,), element_names=("entailment", "contradiction", "neutral")))


def server_answer(outputs: tuple[OutputSpec, ...], results: list[dict], binary: bool) -> tuple[bytes, str | None]:
    wire = WireRequest(items=[{}] * len(results), protocol="v2", binary_outputs=binary)
    body, json_length = v2.encode_response(wire, results, outputs, "m").to_rest()
    if json_length is None:
        return json.dumps(body).encode(), None
    return body, str(json_length)


@pytest.mark.parametrize("binary", [True, False])
def test_the_client_reads_every_kind_of_server_answer(binary: bool) -> None:
    labels = labels_from(decode_response(*server_answer(
        LABEL_OUTPUTS, [{"labels": ["cat", "\u72d7"], "scores": [0.75, 0.25]},
                        {"labels": ["a", "b"], "scores": [0.5, 0.5]}], binary), "rid"))
    assert [(one.labels, one.scores) for one in labels] == [(["cat", "\u72d7"], [0.75, 0.25]), (["a", "b"], [0.5, 0.5])]

    face = {"image": EncodedImage(b"\x89PNG\r\n\x1a\n pixels", "png"), "faces": 2, "quality_score": 0.25,
            "needs_review": True, "width": 64, "height": 32}
    (enhanced,) = faces_from(decode_response(*server_answer(FACE_OUTPUTS, [face], binary), "rid"))
    assert (enhanced.image_bytes, enhanced.format, enhanced.faces, enhanced.needs_review) == (
        b"\x89PNG\r\n\x1a\n pixels", "png", 2, True)
    assert (enhanced.quality_score, enhanced.width, enhanced.height) == (0.25, 64, 32)

    (entailment,) = entailments_from(decode_response(*server_answer(
        ENTAILMENT_OUTPUTS, [{"label": "neutral", "scores": [0.25, 0.25, 0.5]}], binary), "rid"))
    assert entailment.label == "neutral"
    assert entailment.scores == {"entailment": 0.25, "contradiction": 0.25, "neutral": 0.5}


def test_json_binary_content_is_base64() -> None:
    encoded = encode_request({"image": [b"\x00\xff"]}, {}, "json")
    assert json.loads(encoded.content)["inputs"][0]["data"] == [base64.b64encode(b"\x00\xff").decode()]


@pytest.mark.parametrize(
    ("body", "header_length"),
    [(b"<html>oops</html>", None), (b'{"outputs": [{"name": "x"}]}', None),
     (b'{"outputs": [{"name": "s", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}'
      b"\x00\x00\x80?", "101")],
    ids=["not-json", "no-datatype", "short-binary"],
)
def test_a_malformed_answer_is_an_unexpected_response(body: bytes, header_length: str | None) -> None:
    with pytest.raises(UnexpectedResponse) as caught:
        decode_response(body, header_length, "rid-9")
    assert caught.value.request_id == "rid-9"
