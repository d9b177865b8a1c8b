import base64

import numpy as np
import pytest

from predictors.codecs import v1
from predictors.codecs.images import EncodedImage
from predictors.codecs.types import InputSpec, OutputSpec
from predictors.errors import InvalidInput

IMAGE_ONLY = (InputSpec("image", "image"),)
IMAGE_AND_TEXT = (InputSpec("image", "image"), InputSpec("hypothesis", "text", max_bytes=10),
                  InputSpec("premise", "text", optional=True))
B64 = base64.b64encode(b"\x89PNG...").decode()


def test_decodes_b64_objects_and_bare_strings() -> None:
    wire = v1.decode_request({"instances": [{"image": {"b64": B64}}, {"image": B64}], "parameters": {"top_k": 2}},
                             IMAGE_ONLY, max_items=64)
    assert [item["image"] for item in wire.items] == [b"\x89PNG..."] * 2
    assert wire.parameters == {"top_k": 2} and wire.protocol == "v1"


def test_text_inputs_and_optional_fields() -> None:
    wire = v1.decode_request({"instances": [{"image": B64, "hypothesis": "a cat"},
                                            {"image": B64, "hypothesis": "a dog", "premise": "p"}]},
                             IMAGE_AND_TEXT, max_items=64)
    assert wire.items[0] == {"image": b"\x89PNG...", "hypothesis": "a cat"}
    assert wire.items[1]["premise"] == "p"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"instances": {}}, "non-empty list"),
        ({"instances": []}, "non-empty list"),
        ({"instances": [1]}, r"instances\[0\] must be an object"),
        ({"instances": [{}]}, r"instances\[0\]\.image is missing"),
        ({"instances": [{"image": B64, "extra": 1}]}, "unknown field"),
        ({"instances": [{"image": {"b64": "%%%"}}]}, "not valid base64"),
        ({"instances": [{"image": B64}], "parameters": []}, '"parameters" must be a JSON object'),
        ({"instances": [{"image": B64}], "signature_name": "x"}, "unknown top-level"),
        ({"instances": [{"image": B64}] * 3}, "limit is 2"),
    ],
)
def test_rejections_name_the_problem(body, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        v1.decode_request(body, IMAGE_ONLY, max_items=2)


@pytest.mark.parametrize(
    ("hypothesis", "message"),
    [("", "instances\\[0\\].hypothesis is empty"), ("   ", "is empty"), ("x" * 11, "11 bytes"),
     (5, "must be a string")],
)
def test_text_validation(hypothesis, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        v1.decode_request({"instances": [{"image": B64, "hypothesis": hypothesis}]}, IMAGE_AND_TEXT, max_items=8)


def test_text_limit_counts_utf8_bytes() -> None:
    with pytest.raises(InvalidInput, match="12 bytes"):
        v1.decode_request({"instances": [{"image": B64, "hypothesis": "猫猫猫猫"}]}, IMAGE_AND_TEXT, max_items=8)


def test_encode_response_turns_images_arrays_and_named_vectors_into_json() -> None:
    outputs = (OutputSpec("image", "BYTES"), OutputSpec("scores", "FP32", (3,), ("a", "b", "c")))
    body = v1.encode_response(
        [{"image": EncodedImage(b"\x00\x01", "png"), "scores": np.array([0.5, 0.25, 0.25], dtype=np.float32),
          "faces": np.int32(2)}],
        outputs,
    )
    prediction = body["predictions"][0]
    assert prediction["image"] == {"b64": base64.b64encode(b"\x00\x01").decode()}
    assert prediction["scores"] == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert prediction["faces"] == 2 and isinstance(prediction["faces"], int)
