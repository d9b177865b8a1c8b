"""`codecs.accept`: when v1 answers with the image itself, in which encoding, and when that is 406."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from predictors.codecs import accept
from predictors.codecs.images import EncodedImage
from predictors.codecs.types import OutputSpec, WireRequest
from predictors.errors import NotAcceptable
from predictors.models.classification import ClassifierPredictor
from predictors.models.face_enhancement.predictor import FaceEnhancementPredictor
from tests.unit.codecs.fuzzing import only_documented_errors

FACE = FaceEnhancementPredictor.outputs
CLASSIFIER = ClassifierPredictor.outputs


@pytest.mark.parametrize(("header", "formats"), [
    (None, None), ("", None), ("*/*", None), ("application/json", None), ("text/html", None),
    ("application/json, image/*", None),  # a tie: JSON, the default
    ("image/*;q=0", None),
    ("image/*", ("jpeg", "png")), ("image/jpeg", ("jpeg",)), ("IMAGE/PNG", ("png",)),
    ("image/png, image/jpeg;q=0.5", ("png", "jpeg")), ("image/*, image/jpeg;q=0.2", ("png", "jpeg")),
    ("application/json;q=0.5, image/png", ("png",)), ("*/*;q=0.1, image/png", ("png", "jpeg")),
    ("image/webp", ()), ("image/gif, image/webp", ()), ("image/png;q=2", None), ("image/png;q=abc", None),
])
def test_an_image_is_answered_when_accept_prefers_one_to_json(header: str | None,
                                                              formats: tuple[str, ...] | None) -> None:
    assert accept.image_formats_preferred(header) == formats


def wire(items: int = 1, **parameters: object) -> WireRequest:
    return WireRequest(items=[{"image": b"x"}] * items, parameters=dict(parameters))


def test_the_accepted_encoding_becomes_the_format_parameter_when_the_request_has_none() -> None:
    request = wire()
    accept.negotiate(request, "image/png", FACE)
    assert request.image_answer and request.parameters == {"output_format": "png"}
    request = wire(output_format="jpeg")
    accept.negotiate(request, "image/*", FACE)
    assert request.image_answer and request.parameters == {"output_format": "jpeg"}


def test_json_stays_the_default() -> None:
    for header in (None, "*/*", "application/json"):
        request = wire(items=3)
        accept.negotiate(request, header, CLASSIFIER)
        assert not request.image_answer and request.parameters == {}


def test_v2_requests_ignore_accept() -> None:
    request = wire(items=2)
    request.protocol = "v2"
    accept.negotiate(request, "image/png", CLASSIFIER)
    assert not request.image_answer


@pytest.mark.parametrize(("outputs", "request_", "header", "message"), [
    (CLASSIFIER, wire(), "image/*", "answers application/json only"),
    (FACE, wire(items=2), "image/jpeg", "the request holds 2 items"),
    (FACE, wire(), "image/webp", "names no image type this model makes"),
    (FACE, wire(output_format="png"), "image/jpeg", "makes an image/png, which Accept 'image/jpeg' does not take"),
])
def test_what_cannot_be_had_is_not_acceptable(outputs, request_: WireRequest, header: str, message: str) -> None:
    with pytest.raises(NotAcceptable, match=message) as error:
        accept.negotiate(request_, header, outputs)
    assert error.value.status == 406 and error.value.code == "NOT_ACCEPTABLE"


def test_an_invalid_format_parameter_is_left_for_the_model_to_refuse() -> None:
    request = wire(output_format="gif")
    accept.negotiate(request, "image/*", FACE)
    assert request.parameters == {"output_format": "gif"}  # the model's parameters answer INVALID_INPUT


def test_the_image_answer_is_the_bytes_with_the_other_scalars_as_headers() -> None:
    result = {"image": EncodedImage(b"\x89PNG...", "png"), "faces": np.int32(2), "quality_score": 0.75,
              "needs_review": np.bool_(False), "width": 64, "height": 32, "boxes": np.zeros((2, 4))}
    body, headers = accept.encode_image_answer(result, FACE)
    assert body == b"\x89PNG..."
    assert headers == {"Content-Type": "image/png", "X-Faces": "2", "X-Quality-Score": "0.75",
                       "X-Needs-Review": "false", "X-Width": "64", "X-Height": "32"}


def test_a_declared_image_output_that_is_no_image_is_a_bug() -> None:
    with pytest.raises(TypeError, match="declared an encoded image"):
        accept.encode_image_answer({"image": b"raw"}, (OutputSpec("image", "BYTES", image_format_parameter="f"),))


@given(st.text(max_size=60), st.integers(1, 3), st.sampled_from([FACE, CLASSIFIER]))
def test_any_accept_header_is_json_an_image_or_not_acceptable(header: str, items: int, outputs) -> None:
    with only_documented_errors():
        request = wire(items=items)
        accept.negotiate(request, header, outputs)
        assert request.image_answer == (items == 1 and outputs is FACE and bool(accept.image_formats_preferred(header)))
