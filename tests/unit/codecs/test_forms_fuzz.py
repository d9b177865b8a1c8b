"""Properties of `codecs.forms` over generated uploads: any multipart body (well-formed ones from httpx's encoder
with hostile fields, then cut, flipped or spliced; or plain noise), any query string and any Content-Type either
decode into a request the predictors are promised or raise an error the edge answers with a documented 4xx."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import example, given
from hypothesis import strategies as st

from predictors.codecs import forms
from predictors.codecs.types import InputSpec
from predictors.models.classification import ClassificationParameters
from predictors.models.face_enhancement.predictor import FaceEnhancementParameters
from predictors.models.visual_entailment.predictor import VisualEntailmentPredictor
from tests.unit.codecs.fuzzing import CONTRACTS, check_wire, image_bytes, mostly, only_documented_errors

MAX_ITEMS = 4
PARAMETERS = {"classifier": ClassificationParameters, "face-enhancement": FaceEnhancementParameters,
              "visual-entailment": VisualEntailmentPredictor.Parameters}
#: form values: near-valid parameter texts, text inputs, bytes that are not UTF-8
values = mostly(st.sampled_from(["3", "0", "3.5", "true", "false", "png", "gif", "250", "nan", "-1", "", " ",
                                 "a cat", "x" * 1100]),
                st.text(max_size=20).map(str.encode) | st.binary(max_size=20))
field_names = st.sampled_from(["image", "hypothesis", "premise", "top_k", "timeout_ms", "output_format",
                               "jpeg_quality", "require_face", "upscale"])
contracts = st.sampled_from(sorted(CONTRACTS))


def multipart(files: list[tuple[str, bytes, bool]], fields: list[tuple[str, Any]]) -> tuple[bytes, str]:
    data: dict[str, list[Any]] = {}
    for name, value in fields:  # a name may repeat
        data.setdefault(name, []).append(value)
    request = httpx.Request("POST", "http://server/", data=data,
                            files=[(name, ("photo.jpg" if is_file else None, data)) for name, data, is_file in files])
    return request.read(), request.headers["content-type"]


#: fields each model takes (its text inputs, its parameters, with good values)
GOOD_FIELDS = {"classifier": [("top_k", "3"), ("timeout_ms", "5000")],
               "face-enhancement": [("output_format", "png"), ("require_face", "false"), ("jpeg_quality", "80")],
               "visual-entailment": [("hypothesis", "a cat"), ("premise", "a photo"), ("timeout_ms", "5000")]}


@st.composite
def uploads(draw: st.DrawFn, model: str) -> tuple[bytes, str]:
    name = mostly(st.just("image"), mostly(st.just("image"), st.text(max_size=8)))
    files = draw(st.lists(st.tuples(name, image_bytes, st.booleans()),
                          min_size=1, max_size=MAX_ITEMS + 1))  # none: httpx sends no multipart
    fields = [field for field in GOOD_FIELDS[model] if draw(st.booleans())]
    if model == "visual-entailment" and draw(mostly(st.just(True), st.just(False))):
        fields.append(("hypothesis", "a dog"))  # the one input visual entailment cannot do without
    fields += draw(mostly(st.just([]), st.lists(st.tuples(mostly(field_names, st.text(max_size=8)), values),
                                                 min_size=1, max_size=3)))
    body, content_type = multipart(files, fields)
    mutation = draw(mostly(st.just("none"), st.sampled_from(["cut", "flip", "splice", "boundary"])))
    if mutation == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif mutation == "flip" and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
    elif mutation == "splice":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"\r\n", b"--", b"\r\n\r\n", b'"', b";", b"\x00"])) + body[at:]
    elif mutation == "boundary":
        content_type = draw(st.sampled_from(["multipart/form-data", "multipart/form-data; boundary=",
                                             "multipart/form-data; boundary=" + "b" * 200,
                                             'multipart/form-data; boundary="x y"']))
    return body, content_type


@example(("visual-entailment", (b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n\r\n--b--",
                                "multipart/form-data; boundary=b")), "hypothesis=%ff")
@given(contracts.flatmap(lambda model: st.tuples(st.just(model), mostly(uploads(model), st.tuples(
    st.binary(max_size=80), st.just("multipart/form-data; boundary=b"))))),
       mostly(mostly(st.just(""), st.just("timeout_ms=1000")), st.text(max_size=30)))
def test_any_multipart_body_decodes_or_is_a_documented_error(case: tuple[str, tuple[bytes, str]], query: str) -> None:
    model, upload = case
    inputs: tuple[InputSpec, ...] = CONTRACTS[model][0]
    body, content_type = upload
    with only_documented_errors():
        decoded = forms.upload_of(body, content_type, query)
        assert decoded is not None
        wire = forms.decode_upload(decoded, inputs, PARAMETERS[model], MAX_ITEMS)
        check_wire(wire, inputs, MAX_ITEMS)
        PARAMETERS[model].model_validate({k: v for k, v in wire.parameters.items() if k != "timeout_ms"},
                                         strict=True)


@given(contracts, image_bytes, st.text(max_size=60))
def test_any_raw_body_and_query_string_decode_or_are_a_documented_error(model: str, image: bytes,
                                                                         query: str) -> None:
    inputs: tuple[InputSpec, ...] = CONTRACTS[model][0]
    with only_documented_errors():
        decoded = forms.upload_of(image, "image/png", query)
        assert decoded is not None
        check_wire(forms.decode_upload(decoded, inputs, PARAMETERS[model], MAX_ITEMS), inputs, MAX_ITEMS)


@given(mostly(st.sampled_from(["image/gif", "image/jpeg", "multipart/mixed", "text/plain", "application/json",
                               "IMAGE/PNG ; q=1", "multipart/form-data"]), st.text(max_size=40)))
def test_any_content_type_is_an_upload_json_or_a_documented_error(content_type: str) -> None:
    with only_documented_errors():
        forms.upload_of(b"{}", content_type)
    with only_documented_errors():
        raise forms.not_json(content_type, ValueError("not JSON"))
