"""Property: any gRPC ``ModelInferRequest`` goes through the server's own path (KServe's servicer check,
``InferRequest.from_grpc``, ``v2.decode_request``) into a decoded request or a documented 4xx error.

Messages are real protobufs (KServe's ``grpc_predict_v2_pb2``), serialised and parsed back as the
wire would: inputs in ``contents`` or in ``raw_input_contents`` (BYTES tensors with true or lying
length prefixes), with counts of raw contents that do not match the inputs, any datatype, shape and
name, requested outputs and parameters of every kind.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferRequest

from predictors.codecs import v2
from predictors.codecs.types import InputSpec, OutputSpec
from tests.unit.codecs.fuzzing import (
    check_wire,
    contracts,
    image_bytes,
    mostly,
    names_for,
    only_documented_errors,
    texts,
)

MAX_ITEMS = 4
Contract = tuple[tuple[InputSpec, ...], tuple[OutputSpec, ...]]
DATATYPES = mostly(st.just("BYTES"), st.sampled_from(["FP32", "INT32", "INT64", "BOOL", "UINT8", "FP16", "X"]))


def utf8(value: str) -> str:
    # protobuf string fields hold valid Unicode only
    return value.encode("utf-8", "replace").decode("utf-8") if value else value


def parameter() -> st.SearchStrategy[pb.InferParameter]:
    return st.one_of(
        st.booleans().map(lambda v: pb.InferParameter(bool_param=v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: pb.InferParameter(int64_param=v)),
        texts.map(lambda v: pb.InferParameter(string_param=utf8(v))),
        st.just(pb.InferParameter()),
    )


def parameters() -> st.SearchStrategy[dict[str, pb.InferParameter]]:
    keys = st.sampled_from(["top_k", "timeout_ms", "binary_data_output", "output_format", "upscale"]) | texts.map(utf8)
    return st.dictionaries(keys, parameter(), max_size=3)


def element(spec: InputSpec | None) -> st.SearchStrategy[bytes]:
    if spec is not None and spec.kind == "text":
        return texts.map(lambda t: t.encode("utf-8", "surrogatepass")) | st.binary(max_size=8)
    return image_bytes


def raw_bytes_tensor(elements: list[bytes], lie: int) -> bytes:
    out = b""
    for index, data in enumerate(elements):
        stated = len(data) + (lie if index == 0 else 0)
        out += struct.pack("<I", max(0, min(2**32 - 1, stated))) + data
    return out


@st.composite
def infer_requests(draw: st.DrawFn, contract: Contract) -> pb.ModelInferRequest:
    inputs, outputs = contract
    specs = {spec.name: spec for spec in inputs}
    request = pb.ModelInferRequest(model_name="m", id=utf8(draw(texts)))
    raw_mode = draw(st.booleans())
    for _ in range(draw(st.integers(0, 4))):
        name = utf8(draw(names_for(inputs)))
        count = draw(st.integers(0, MAX_ITEMS + 1))
        elements = [draw(element(specs.get(name))) for _ in range(count)]
        shape = draw(mostly(st.just([count]), st.lists(st.integers(-2, MAX_ITEMS + 2), max_size=3)))
        tensor = request.inputs.add(name=name, datatype=draw(DATATYPES), shape=shape)
        for key, value in draw(parameters()).items():
            tensor.parameters[key].CopyFrom(value)
        if raw_mode:
            lie = draw(mostly(st.just(0), st.sampled_from([1, -1, 2**31])))
            request.raw_input_contents.append(raw_bytes_tensor(elements, lie))
            if draw(st.integers(0, 9)) == 0:  # contents as well: the servicer refuses both
                tensor.contents.bytes_contents.extend(elements)
        else:
            tensor.contents.bytes_contents.extend(elements)
            if draw(st.integers(0, 9)) == 0:
                tensor.contents.int_contents.extend([1, 2])
    if raw_mode and draw(st.integers(0, 5)) == 0:  # a raw content without input, or one missing
        if draw(st.booleans()):
            request.raw_input_contents.append(draw(st.binary(max_size=8)))
        elif request.raw_input_contents:
            del request.raw_input_contents[-1]
    for _ in range(draw(st.integers(0, 3))):
        output = request.outputs.add(name=utf8(draw(names_for(outputs))))
        for key, value in draw(parameters()).items():
            output.parameters[key].CopyFrom(value)
    for key, value in draw(parameters()).items():
        request.parameters[key].CopyFrom(value)
    return request


@given(contracts.flatmap(lambda contract: st.tuples(st.just(contract), infer_requests(contract))))
def test_any_model_infer_request_decodes_or_is_a_documented_error(case: tuple[Contract, Any]) -> None:
    (inputs, outputs), message = case
    received = pb.ModelInferRequest.FromString(message.SerializeToString())
    with only_documented_errors():
        InferenceServicer.validate_grpc_request(received)  # what KServe's ModelInfer does first
        wire = v2.decode_request(InferRequest.from_grpc(received), inputs, outputs, MAX_ITEMS)
        check_wire(wire, inputs, MAX_ITEMS)
        assert wire.protocol == "grpc"
