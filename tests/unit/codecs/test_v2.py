import base64
import json

import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput, serialize_byte_tensor

from predictors.codecs import v2
from predictors.codecs.images import EncodedImage
from predictors.codecs.types import InputSpec, OutputSpec, WireRequest
from predictors.errors import InvalidInput

INPUTS = (InputSpec("image", "image"), InputSpec("hypothesis", "text", optional=True, max_bytes=16))
OUTPUTS = (OutputSpec("labels", "BYTES", (-1,)), OutputSpec("scores", "FP32", (-1,)))
RAW = [b"\xff\xd8 jpeg one", b"\x89PNG two"]


def binary_body(parameters=None, outputs=None) -> tuple[bytes, int]:
    raw = serialize_byte_tensor(np.array(RAW, dtype=object)).item()
    header = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                          "parameters": {"binary_data_size": len(raw)}}]}
    if parameters:
        header["parameters"] = parameters
    if outputs:
        header["outputs"] = outputs
    encoded = json.dumps(header).encode()
    return encoded + raw, len(encoded)


def test_binary_extension_keeps_raw_image_bytes() -> None:
    body, length = binary_body(parameters={"top_k": 3, "binary_data_output": True})
    request = v2.parse_binary_request(body, length, "m")
    wire = v2.decode_request(request, INPUTS, OUTPUTS, max_items=64)
    assert [item["image"] for item in wire.items] == RAW
    assert wire.parameters == {"top_k": 3}  # the protocol's own parameter is not the model's
    assert wire.binary_outputs is True


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda body, n: (body, n + 10_000), "does not fit"),
        (lambda body, n: (b"}" + body[1:], n), "malformed"),
        (lambda body, n: (body[:-3], n), "past the body's end"),
    ],
)
def test_broken_binary_bodies(mutate, message: str) -> None:
    body, length = mutate(*binary_body())
    with pytest.raises(InvalidInput, match=message):
        v2.decode_request(v2.parse_binary_request(body, length, "m"), INPUTS, OUTPUTS, max_items=64)


def test_json_elements_are_base64_for_images_and_plain_for_text() -> None:
    request = InferRequest("m", [
        InferInput("image", [1], "BYTES", data=[base64.b64encode(RAW[0]).decode()]),
        InferInput("hypothesis", [1], "BYTES", data=["a red car"]),
    ])
    wire = v2.decode_request(request, INPUTS, OUTPUTS, max_items=64)
    assert wire.items == [{"image": RAW[0], "hypothesis": "a red car"}]


def test_grpc_style_bytes_elements_are_raw_and_text_must_be_utf8() -> None:
    request = InferRequest("m", [InferInput("image", [1], "BYTES", data=[RAW[1]]),
                                 InferInput("hypothesis", [1], "BYTES", data=[b"\xff\xfe"])], from_grpc=True)
    with pytest.raises(InvalidInput, match=r"hypothesis\[0\] is not valid UTF-8"):
        v2.decode_request(request, INPUTS, OUTPUTS, max_items=64)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ([InferInput("image", [1], "FP32", data=[1.0])], "datatype BYTES"),
        ([InferInput("image", [2], "BYTES", data=["AA=="])], "but 1 element"),
        ([InferInput("image", [1, 1], "BYTES", data=["AA=="])], r"shape \[N\]"),
        ([InferInput("picture", [1], "BYTES", data=["AA=="])], "unknown input 'picture'"),
        ([], "missing input 'image'"),
        ([InferInput("image", [1], "BYTES", data=["AA=="]), InferInput("image", [1], "BYTES", data=["AA=="])],
         "given twice"),
        ([InferInput("image", [2], "BYTES", data=["AA==", "AA=="]),
          InferInput("hypothesis", [1], "BYTES", data=["x"])], "same number of elements"),
        ([InferInput("image", [3], "BYTES", data=["AA=="] * 3)], "limit is 2"),
    ],
)
def test_tensor_validation(tensors, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        v2.decode_request(InferRequest("m", tensors), INPUTS, OUTPUTS, max_items=2)


def test_unknown_requested_output() -> None:
    request = InferRequest("m", [InferInput("image", [1], "BYTES", data=["AA=="])],
                           request_outputs=[RequestedOutput("logits")])
    with pytest.raises(InvalidInput, match="unknown output 'logits'"):
        v2.decode_request(request, INPUTS, OUTPUTS, max_items=8)


def test_encode_json_response_base64s_binary_payloads() -> None:
    wire = WireRequest(items=[{}], protocol="v2")
    outputs = (OutputSpec("image", "BYTES"), OutputSpec("faces", "INT32"))
    wire.request_id = "caller-42"
    response = v2.encode_response(wire, [{"image": EncodedImage(b"\x00\xff", "png"), "faces": 1}], outputs, "m")
    body, json_length = response.to_rest()
    assert json_length is None
    tensors = {o["name"]: o for o in body["outputs"]}
    assert base64.b64decode(tensors["image"]["data"][0]) == b"\x00\xff"
    assert tensors["faces"] == {"name": "faces", "shape": [1], "datatype": "INT32", "data": [1]}
    assert body["id"] == "caller-42"


def test_a_response_without_a_request_id_has_no_id_and_nothing_is_null() -> None:
    """The spec's schema has strings, arrays and objects: an absent value is an omitted field, never null."""
    response = v2.encode_response(WireRequest(items=[{}], protocol="v2"), [{"labels": ["a"], "scores": [0.5]}],
                                  OUTPUTS, "m")
    body, _ = response.to_rest()
    assert set(body) == {"model_name", "outputs"}
    assert all(value is not None for output in body["outputs"] for value in output.values())
    assert response.to_grpc().id == ""


def test_encode_binary_response_when_asked() -> None:
    wire = WireRequest(items=[{}, {}], protocol="v2", requested_outputs={"scores": True})
    response = v2.encode_response(wire, [{"labels": ["a"], "scores": [0.5]}, {"labels": ["b"], "scores": [0.25]}],
                                  OUTPUTS, "m")
    body, json_length = response.to_rest()
    header = json.loads(body[:json_length])
    assert header["outputs"] == [{"name": "scores", "datatype": "FP32", "shape": [2, 1],
                                  "parameters": {"binary_data_size": 8}}]
    assert np.frombuffer(body[json_length:], dtype=np.float32).tolist() == [0.5, 0.25]


def test_encode_grpc_response_is_raw_when_the_request_was() -> None:
    wire = WireRequest(items=[{}], protocol="grpc", raw_outputs=True, request_id="r")
    response = v2.encode_response(wire, [{"labels": ["猫", "狗"], "scores": [0.75, 0.25]}], OUTPUTS, "m")
    message = response.to_grpc()
    assert [o.name for o in message.outputs] == ["labels", "scores"] and message.id == "r"
    assert list(message.outputs[0].shape) == [1, 2]
    assert not message.outputs[0].HasField("contents")
    assert np.frombuffer(message.raw_output_contents[1], dtype=np.float32).tolist() == [0.75, 0.25]


def test_encode_grpc_response_is_typed_when_the_request_was() -> None:
    wire = WireRequest(items=[{}], protocol="grpc")
    message = v2.encode_response(wire, [{"labels": ["猫", "狗"], "scores": [0.75, 0.25]}], OUTPUTS, "m").to_grpc()
    assert list(message.raw_output_contents) == []
    assert list(message.outputs[0].contents.bytes_contents) == ["猫".encode(), "狗".encode()]
    assert list(message.outputs[1].contents.fp32_contents) == [0.75, 0.25]


@pytest.mark.parametrize(
    ("parameters", "outputs", "binary"),
    [
        ({"binary_data_output": True}, None, {"labels": True, "scores": True}),
        # an output without its own `binary_data` follows binary_data_output (the extension's text)
        ({"binary_data_output": True}, [{"name": "scores"}], {"scores": True}),
        ({"binary_data_output": True}, [{"name": "scores", "parameters": {"binary_data": False}}], {"scores": False}),
        (None, [{"name": "labels", "parameters": {"binary_data": True}}, {"name": "scores"}],
         {"labels": True, "scores": False}),
    ],
)
def test_binary_data_output_and_binary_data(parameters, outputs, binary) -> None:
    body, length = binary_body(parameters=parameters, outputs=outputs)
    wire = v2.decode_request(v2.parse_binary_request(body, length, "m"), INPUTS, OUTPUTS, max_items=64)
    response = v2.encode_response(wire, [{"labels": ["a"], "scores": [0.5]}] * 2, OUTPUTS, "m")
    assert {output.name: output.binary for output in response.outputs} == binary


@pytest.mark.parametrize("parameters", [{"binary_data_output": "yes"}, {"binary_data_output": 1}])
def test_binary_data_output_must_be_a_boolean(parameters) -> None:
    body, length = binary_body(parameters=parameters)
    with pytest.raises(InvalidInput, match="binary_data_output must be a boolean"):
        v2.decode_request(v2.parse_binary_request(body, length, "m"), INPUTS, OUTPUTS, max_items=64)


def test_vector_outputs_state_their_element_order() -> None:
    names = ("entailment", "contradiction", "neutral")
    outputs = (OutputSpec("label", "BYTES"), OutputSpec("scores", "FP32", (3,), names))
    results = [{"label": "neutral", "scores": [0.2, 0.3, 0.5]}]
    body, _ = v2.encode_response(WireRequest(items=[{}], protocol="v2"), results, outputs, "m").to_rest()
    scores = {o["name"]: o for o in body["outputs"]}["scores"]
    assert scores["parameters"] == {"element_names": "entailment,contradiction,neutral"}
    assert scores["data"] == pytest.approx([0.2, 0.3, 0.5])
    message = v2.encode_response(WireRequest(items=[{}], protocol="grpc"), results, outputs, "m").to_grpc()
    assert message.outputs[1].parameters["element_names"].string_param == "entailment,contradiction,neutral"


def _header_body(header: dict, payload: bytes = b"") -> tuple[bytes, int]:
    encoded = json.dumps(header).encode()
    return encoded + payload, len(encoded)


IMAGE_TENSOR = {"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}


@pytest.mark.parametrize(
    "header",
    [
        # found by the v2 fuzz tests: each escaped parse_binary_request as AttributeError/TypeError (a 500)
        {"inputs": [IMAGE_TENSOR], "outputs": [None]},
        {"inputs": [IMAGE_TENSOR], "outputs": [{"name": "labels", "parameters": [1]}]},
        {"inputs": [IMAGE_TENSOR], "outputs": {"name": "labels"}},
        {"inputs": [{**IMAGE_TENSOR, "parameters": ["binary_data_size"]}]},
        {"inputs": [{**IMAGE_TENSOR, "shape": "1"}]},
        {"inputs": [{**IMAGE_TENSOR, "shape": [True]}]},
        {"inputs": [{**IMAGE_TENSOR, "name": 7}]},
        {"inputs": [IMAGE_TENSOR], "parameters": [["top_k", 3]]},
        {"inputs": [IMAGE_TENSOR], "id": {"x": 1}},
    ],
)
def test_malformed_headers_are_invalid_input(header: dict) -> None:
    body, length = _header_body(header)
    with pytest.raises(InvalidInput):
        v2.decode_request(v2.parse_binary_request(body, length, "m"), INPUTS, OUTPUTS, max_items=64)


def test_binary_data_size_must_be_an_integer_not_a_boolean() -> None:
    raw = serialize_byte_tensor(np.array([b"x"], dtype=object)).item()
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": True}}
    header = {"inputs": [tensor]}
    body, length = _header_body(header, raw)
    with pytest.raises(InvalidInput, match="binary_data_size"):
        v2.parse_binary_request(body, length, "m")


def test_bytes_left_over_after_the_binary_inputs_are_invalid_input() -> None:
    # a header that understates binary_data_size would otherwise silently drop the rest of the body
    body, length = binary_body()
    with pytest.raises(InvalidInput, match="after the last binary input"):
        v2.parse_binary_request(body + b"\x00\x00", length, "m")


def test_an_output_requested_twice_is_invalid_input() -> None:
    # found by the hostile corpus: the second request silently overwrote the first (binary or not)
    outputs = [RequestedOutput("labels", {"binary_data": True}), RequestedOutput("labels")]
    image = InferInput("image", [1], "BYTES", data=[base64.b64encode(RAW[0]).decode()])
    request = InferRequest("m", [image], request_outputs=outputs)
    with pytest.raises(InvalidInput, match="requested twice"):
        v2.decode_request(request, INPUTS, OUTPUTS, max_items=64)
