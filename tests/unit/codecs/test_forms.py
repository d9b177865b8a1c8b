"""`codecs.forms`: multipart/form-data and raw image bodies -> the same `WireRequest` as the v1 JSON body.

Multipart bodies are made by httpx's encoder (a real client's, not ours), so the tests do not share the parser's
assumptions. The central property: an upload decodes to exactly what the JSON body with the same content
decodes to, items and parameters alike.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from predictors.codecs import forms, v1
from predictors.codecs.types import InputSpec, model_parameters
from predictors.errors import InvalidInput, UnsupportedMediaType
from predictors.models.classification import ClassificationParameters
from predictors.models.face_enhancement.predictor import FaceEnhancementParameters, FaceEnhancementPredictor
from predictors.models.visual_entailment.predictor import VisualEntailmentPredictor

ENTAILMENT = VisualEntailmentPredictor.inputs
IMAGE_ONLY = (InputSpec("image", "image"),)
NO_PARAMETERS = VisualEntailmentPredictor.Parameters
MAX_ITEMS = 4


def multipart(files: list[bytes], data: dict[str, Any] | None = None, name: str = "image") -> tuple[bytes, str]:
    """(body, Content-Type) as httpx sends them."""
    request = httpx.Request("POST", "http://server/", files=[(name, (f"{i}.jpg", image)) for i, image in
                                                            enumerate(files)], data=data or {})
    return request.read(), request.headers["content-type"]


def decode(body: bytes, content_type: str, inputs: tuple[InputSpec, ...] = IMAGE_ONLY,
           parameters: type = ClassificationParameters, query: str = "") -> Any:
    upload = forms.upload_of(body, content_type, query)
    assert upload is not None
    return forms.decode_upload(upload, inputs, parameters, MAX_ITEMS)


def as_form_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


# ---- the same request as JSON ----------------------------------------------------------------------

images = st.binary(min_size=1, max_size=64)
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12).filter(str.strip)
face_parameters = st.fixed_dictionaries({}, optional={
    "output_format": st.sampled_from(["jpeg", "png"]), "jpeg_quality": st.integers(1, 100),
    "require_face": st.booleans(), "upscale": st.booleans(), "timeout_ms": st.integers(1, 10**6)})


@given(st.lists(images, min_size=1, max_size=MAX_ITEMS), face_parameters)
def test_a_multipart_upload_is_the_json_request_with_the_same_content(files: list[bytes], parameters: dict) -> None:
    body, content_type = multipart(files, {name: as_form_text(value) for name, value in parameters.items()})
    wire = decode(body, content_type, FaceEnhancementPredictor.inputs, FaceEnhancementParameters)
    json_body = {"instances": [{"image": base64.b64encode(image).decode()} for image in files],
                 "parameters": parameters}
    expected = v1.decode_request(json_body, FaceEnhancementPredictor.inputs, MAX_ITEMS)
    assert wire.items == expected.items
    assert wire.parameters == expected.parameters and wire.protocol == "v1"
    # typed, not text: what the model's strict parameter check then accepts
    FaceEnhancementParameters.model_validate(model_parameters(wire.parameters), strict=True)


@given(st.lists(images, min_size=1, max_size=MAX_ITEMS).flatmap(
    lambda files: st.tuples(st.just(files), st.lists(texts, min_size=len(files), max_size=len(files)) | texts.map(
        lambda text: [text]), st.none() | texts)))
def test_text_fields_go_with_the_images_once_or_one_each(case: tuple[list[bytes], list[str], str | None]) -> None:
    files, hypotheses, premise = case
    data: dict[str, Any] = {"hypothesis": hypotheses}
    if premise is not None:
        data["premise"] = premise
    wire = decode(*multipart(files, data), ENTAILMENT, NO_PARAMETERS)
    expected_hypotheses = hypotheses if len(hypotheses) == len(files) else hypotheses * len(files)
    instances = [{"image": base64.b64encode(image).decode(), "hypothesis": hypothesis}
                 for image, hypothesis in zip(files, expected_hypotheses, strict=True)]
    for instance in instances:
        if premise is not None:
            instance["premise"] = premise
    assert wire.items == v1.decode_request({"instances": instances}, ENTAILMENT, MAX_ITEMS).items


def test_one_image_with_several_hypotheses_is_several_instances() -> None:
    wire = decode(*multipart([b"img"], {"hypothesis": ["a cat", "a dog"]}), ENTAILMENT, NO_PARAMETERS)
    assert wire.items == [{"image": b"img", "hypothesis": "a cat"}, {"image": b"img", "hypothesis": "a dog"}]


def test_an_image_sent_as_a_plain_field_is_an_image_too() -> None:
    request = httpx.Request("POST", "http://server/", files=[("image", (None, b"\xff\xd8 bytes"))])
    assert b"filename" not in request.read()
    assert decode(request.read(), request.headers["content-type"]).items == [{"image": b"\xff\xd8 bytes"}]


# ---- raw image bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/png", "image/webp", "image/bmp", "IMAGE/JPEG",
                                          "image/jpg", "image/png; charset=binary"])
def test_a_raw_image_body_is_one_instance_with_the_query_as_fields(content_type: str) -> None:
    wire = decode(b"\xff\xd8 raw bytes", content_type, query="top_k=3&timeout_ms=250.5")
    assert wire.items == [{"image": b"\xff\xd8 raw bytes"}]
    assert wire.parameters == {"top_k": 3, "timeout_ms": 250.5}


def test_a_raw_body_takes_its_text_inputs_from_the_query_string() -> None:
    wire = decode(b"img", "image/png", ENTAILMENT, NO_PARAMETERS, query="hypothesis=there%20is%20a%20cat&premise=p")
    assert wire.items == [{"image": b"img", "hypothesis": "there is a cat", "premise": "p"}]


def test_a_multipart_upload_may_use_the_query_string_too() -> None:
    body, content_type = multipart([b"img"])
    assert decode(body, content_type, query="top_k=2").parameters == {"top_k": 2}
    with pytest.raises(InvalidInput, match=r"\['top_k'\] given more than once"):
        decode(*multipart([b"img"], {"top_k": "2"}), query="top_k=3")


# ---- which bodies are uploads ----------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "", "application/json", "application/x-www-form-urlencoded",
                                          "text/plain", "application/octet-stream"])
def test_other_bodies_are_left_to_the_json_reader(content_type: str | None) -> None:
    assert forms.upload_of(b"{}", content_type) is None


@pytest.mark.parametrize("content_type", ["image/gif", "image/tiff", "image/svg+xml", "multipart/mixed; boundary=x",
                                          "multipart/related"])
def test_images_and_multiparts_not_taken_are_unsupported_media_types(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType, match="is not accepted here"):
        forms.upload_of(b"GIF89a", content_type)


@pytest.mark.parametrize(("content_type", "code"), [
    ("application/json", "INVALID_INPUT"), ("application/problem+json", "INVALID_INPUT"), (None, "INVALID_INPUT"),
    ("application/x-www-form-urlencoded", "INVALID_INPUT"), ("text/plain", "UNSUPPORTED_MEDIA_TYPE"),
    ("application/octet-stream", "UNSUPPORTED_MEDIA_TYPE")])
def test_a_body_that_is_not_json_is_malformed_json_or_an_unsupported_type(content_type: str | None,
                                                                          code: str) -> None:
    assert forms.not_json(content_type, ValueError("unexpected character")).code == code


# ---- refusals ---------------------------------------------------------------------------------------

VALID, CONTENT_TYPE = multipart([b"img"])
BOUNDARY = CONTENT_TYPE.split("boundary=")[1]


@pytest.mark.parametrize(("body", "content_type", "query", "message"), [
    (VALID, "multipart/form-data", "", "without a boundary"),
    (VALID, "multipart/form-data; boundary=other", "", "malformed multipart"),
    (VALID[:-10], CONTENT_TYPE, "", "ends before its closing boundary"),
    (b"", CONTENT_TYPE, "", "ends before its closing boundary"),
    (b"garbage" + VALID, CONTENT_TYPE, "", "malformed multipart"),
    (f"--{BOUNDARY}--\r\n".encode(), CONTENT_TYPE, "", r"\['image'\] missing"),
    (f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(), CONTENT_TYPE, "",
     "without 'Content-Disposition: form-data; name="),
    (f"--{BOUNDARY}\r\nContent-Disposition: attachment; name=image\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
     CONTENT_TYPE, "", "without 'Content-Disposition: form-data; name="),
    (*multipart([b"img"], name="picture"), "", r"unknown form field\(s\) \['picture'\]"),
    (*multipart([b"img"] * (MAX_ITEMS + 1)), "",
     f"{MAX_ITEMS + 1} instances in one request; the limit is {MAX_ITEMS}"),
    (*multipart([b"img"] * 50), "", "more than 6 parts"),
    (*multipart([b"img"], {"top_k": "3.5"}), "", "parameters.top_k: Input should be a valid integer"),
    (*multipart([b"img"], {"top_k": "true"}), "", "parameters.top_k"),
    (*multipart([b"img"], {"top_k": "0"}), "", "parameters.top_k: Input should be greater than"),
    (*multipart([b"img"], {"top_k": ["1", "2"]}), "", "given more than once"),
    (*multipart([b"img"], {"timeout_ms": "soon"}), "", "parameters.timeout_ms"),
    (b"img", "image/jpeg", "top=1", r"unknown form field\(s\) \['top'\]"),
    (b"img", "image/jpeg", "top_k=", "parameters.top_k"),
    (b"img", "image/jpeg", "&".join(["top_k=1"] * 7), "more than 6 fields in the query string"),
])
def test_refusals_name_the_problem(body: bytes, content_type: str, query: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode(body, content_type, query=query)


@pytest.mark.parametrize(("files", "data", "query", "message"), [
    ([b"img"], {}, "", r"\['hypothesis'\] missing"),
    ([b"img"] * 2, {"hypothesis": ["a", "b", "c"]}, "", "'image' is given 2 times for 3 instances"),
    ([b"img"], {"hypothesis": " "}, "", r"hypothesis\[0\] is empty"),
    ([b"img"], {"hypothesis": "x" * 2000}, "", r"hypothesis\[0\] is \d+ bytes of UTF-8; the limit is"),
    ([b"img"], {}, "hypothesis=%ff", "not UTF-8"),
    ([b"img"], {"hypothesis": "a"}, "image=abc", "cannot travel in the query string"),
])
def test_text_inputs_are_checked_as_in_json(files: list[bytes], data: dict, query: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode(*multipart(files, data), ENTAILMENT, NO_PARAMETERS, query=query)


def test_a_text_field_that_is_not_utf8_is_invalid_input() -> None:
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nimg\r\n--{BOUNDARY}\r\n"
            f"Content-Disposition: form-data; name=\"hypothesis\"\r\n\r\n").encode() + b"\xff\xfe" + \
        f"\r\n--{BOUNDARY}--\r\n".encode()
    with pytest.raises(InvalidInput, match=r"hypothesis\[0\] is not UTF-8 text"):
        decode(body, CONTENT_TYPE, ENTAILMENT, NO_PARAMETERS)


def test_a_raw_body_needs_a_model_with_one_image_input() -> None:
    two = (InputSpec("image", "image"), InputSpec("mask", "image"))
    with pytest.raises(InvalidInput, match="one image input"):
        decode(b"img", "image/png", two)
