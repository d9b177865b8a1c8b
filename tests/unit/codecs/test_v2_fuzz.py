"""Properties of the v2 (Open Inference Protocol) REST decoding, on the server's own paths:

- JSON bodies validated by KServe's pydantic ``InferenceRequest`` (what FastAPI does for a JSON
  Content-Type) or handed over as bytes (``parse_binary_request`` over the whole body), then
  ``v2.decode_request``;
- the binary tensor extension: a JSON header whose length the ``Inference-Header-Content-Length``
  header states (truthfully or not), inputs with ``binary_data_size`` (true or lying) and BYTES
  tensors made of 4-byte little-endian length prefixes (true or lying).

Every body decodes into what the predictors are promised or raises a documented 4xx error.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest.v2_datamodels import InferenceRequest

from predictors.codecs import v2
from predictors.codecs.types import InputSpec, OutputSpec
from tests.unit.codecs.fuzzing import (
    CONTRACTS,
    base64_texts,
    check_wire,
    contracts,
    image_bytes,
    json_values,
    mostly,
    names_for,
    only_documented_errors,
    texts,
)

MAX_ITEMS = 4
DATATYPES = st.sampled_from(["BYTES", "FP32", "INT32", "INT64", "BOOL", "UINT8", "FP16", "bytes", ""]) | texts
Contract = tuple[tuple[InputSpec, ...], tuple[OutputSpec, ...]]


def shapes(count: int | None = None) -> st.SearchStrategy[Any]:
    wrong = st.lists(st.integers(-2, MAX_ITEMS + 2), max_size=3) | json_values
    return wrong if count is None else mostly(st.just([count]), wrong)


def element(spec: InputSpec | None) -> st.SearchStrategy[Any]:
    if spec is not None and spec.kind == "image":
        return base64_texts()
    return mostly(texts, json_values)


def json_tensor(inputs: tuple[InputSpec, ...]) -> st.SearchStrategy[dict[str, Any]]:
    specs = {spec.name: spec for spec in inputs}
    return names_for(inputs).flatmap(
        lambda name: st.fixed_dictionaries(
            {
                "name": mostly(st.just(name), json_values),
                "datatype": mostly(st.just("BYTES"), DATATYPES),
                "shape": shapes(),
                "data": mostly(st.lists(element(specs.get(name)), max_size=MAX_ITEMS + 1), json_values),
            },
            optional={"parameters": mostly(st.dictionaries(texts, json_values, max_size=2), json_values)},
        )
    )


def requested_outputs(outputs: tuple[OutputSpec, ...]) -> st.SearchStrategy[Any]:
    output = st.fixed_dictionaries(
        {"name": names_for(outputs)},
        optional={"parameters": mostly(st.fixed_dictionaries({}, optional={"binary_data": json_values}), json_values)},
    )
    return mostly(st.lists(mostly(output, json_values), max_size=3), json_values)


def json_bodies(contract: Contract) -> st.SearchStrategy[Any]:
    inputs, outputs = contract
    body = st.fixed_dictionaries(
        {"inputs": mostly(st.lists(json_tensor(inputs), max_size=4), json_values)},
        optional={
            "id": texts | json_values,
            "parameters": mostly(st.dictionaries(texts, json_values, max_size=3), json_values),
            "outputs": requested_outputs(outputs),
        },
    )
    return mostly(body, json_values)


def with_contract(strategy: Any) -> st.SearchStrategy[tuple[Contract, Any]]:
    return contracts.flatmap(lambda contract: st.tuples(st.just(contract), strategy(contract)))


def _decoded(request: InferRequest, contract: Contract) -> None:
    inputs, outputs = contract
    wire = v2.decode_request(request, inputs, outputs, MAX_ITEMS)
    check_wire(wire, inputs, MAX_ITEMS)
    assert not set(wire.parameters) & v2.PROTOCOL_PARAMETERS


@given(with_contract(json_bodies))
def test_any_v2_json_body_decodes_or_is_a_documented_error(case: tuple[Contract, Any]) -> None:
    contract, body = case
    # a JSON Content-Type: FastAPI validates the body into KServe's pydantic model first
    with only_documented_errors():
        _decoded(InferRequest.from_inference_request(InferenceRequest.model_validate(body), "m"), contract)
    # any other Content-Type: the body arrives as bytes and is parsed as a header without binary data
    raw = json.dumps(body, allow_nan=True).encode()
    with only_documented_errors():
        _decoded(v2.parse_binary_request(raw, len(raw), "m"), contract)


# ---- the binary tensor extension -------------------------------------------------------------------


def bytes_tensor(elements: list[bytes], lies: list[int]) -> bytes:
    """BYTES tensor: each element behind its 4-byte LE length, which `lies` may shift."""
    out = b""
    for index, data in enumerate(elements):
        stated = max(0, min(2**32 - 1, len(data) + (lies[index] if index < len(lies) else 0)))
        out += struct.pack("<I", stated) + data
    return out


@st.composite
def binary_bodies(draw: st.DrawFn, contract: Contract) -> tuple[bytes, int]:
    inputs, outputs = contract
    specs = {spec.name: spec for spec in inputs}
    header: dict[str, Any] = {"inputs": []}
    payload = b""
    for _ in range(draw(st.integers(0, 4))):
        name = draw(names_for(inputs))
        count = draw(st.integers(0, MAX_ITEMS + 1))
        spec = specs.get(name)
        elements = [
            draw(image_bytes if spec is None or spec.kind == "image" else texts.map(
                lambda t: t.encode("utf-8", "surrogatepass")) | st.binary(max_size=16))
            for _ in range(count)
        ]
        lies = draw(mostly(st.just([]), st.lists(st.sampled_from([0, -1, 1, -4, 7, 2**31]), max_size=count)))
        tensor = bytes_tensor(elements, lies)
        size = len(tensor) + draw(mostly(st.just(0), st.sampled_from([-1, 1, -len(tensor), 10**6, -(10**6)])))
        entry: dict[str, Any] = {
            "name": name,
            "datatype": draw(mostly(st.just("BYTES"), DATATYPES)),
            "shape": draw(shapes(count)),
            "parameters": {"binary_data_size": draw(mostly(st.just(size), json_values))},
        }
        if draw(st.booleans().map(lambda b: b and draw(st.integers(0, 9)) == 0)):
            entry["data"] = draw(json_values)
        header["inputs"].append(entry)
        payload += tensor
    if draw(st.booleans()):
        header["outputs"] = draw(requested_outputs(outputs))
    if draw(st.booleans()):
        header["parameters"] = draw(st.dictionaries(texts, json_values, max_size=3))
    encoded = json.dumps(header, allow_nan=True).encode()
    stated_length = len(encoded) + draw(
        mostly(st.just(0), st.sampled_from([-1, 1, -len(encoded), len(payload) + 1, -(2**40)]))
    )
    return encoded + payload + draw(mostly(st.just(b""), st.binary(min_size=1, max_size=8))), stated_length


@example((CONTRACTS["classifier"], (b"", 0)))
@given(with_contract(binary_bodies))
def test_any_binary_extension_body_decodes_or_is_a_documented_error(case: tuple[Contract, tuple[bytes, int]]) -> None:
    contract, (body, header_length) = case
    with only_documented_errors():
        _decoded(v2.parse_binary_request(body, header_length, "m"), contract)


@given(st.binary(max_size=200), st.integers(-10, 210))
def test_any_bytes_with_any_header_length_are_decoded_or_rejected(body: bytes, header_length: int) -> None:
    inputs, outputs = (InputSpec("image", "image"),), (OutputSpec("labels", "BYTES", (-1,)),)
    with only_documented_errors():
        _decoded(v2.parse_binary_request(body, header_length, "m"), (inputs, outputs))
