"""Open Inference Protocol (KServe v2): REST JSON, REST with the binary tensor extension, and gRPC.

Every input is a 1-D ``BYTES`` tensor of shape ``[N]``. Over JSON an image element is a base64
string and a text element a plain string; over the binary extension and gRPC an element is raw bytes
(encoded image, or UTF-8 text).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np
import orjson
from kserve.protocol.infer_type import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    deserialize_bytes_tensor,
    to_http_parameters,
)

from predictors.codecs.images import EncodedImage
from predictors.codecs.text import validate_text
from predictors.codecs.types import InputSpec, OutputSpec, RawItem, WireRequest
from predictors.codecs.v1 import decode_base64
from predictors.errors import InvalidInput

#: request parameters that belong to the protocol, not to the model
PROTOCOL_PARAMETERS = frozenset({"binary_data_output"})


def parse_binary_request(body: bytes, json_length: int, model_name: str) -> InferRequest:
    """Parse a REST request using the binary tensor extension without re-encoding raw bytes as text.

    (KServe's own parser converts binary BYTES elements to UTF-8 strings, which fails for images.)
    """
    if json_length < 0 or json_length > len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length {json_length} does not fit a body of {len(body)} bytes"
        )
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the JSON header of the binary request is malformed: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInput('the request must be a JSON object with an "inputs" list')
    offset = json_length
    infer_inputs = []
    for index, tensor in enumerate(header["inputs"]):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise InvalidInput(f"{where} must be an object")
        name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
        if not isinstance(name, str) or not isinstance(datatype, str) or not _is_shape(shape):
            raise InvalidInput(f"{where} needs 'name' (string), 'shape' (list of integers) and 'datatype' (string)")
        parameters = _optional_object(tensor.get("parameters"), f"{where}.parameters")
        infer_input = InferInput(name=name, shape=list(shape), datatype=datatype, parameters=parameters)
        size = (parameters or {}).get("binary_data_size")
        if "data" in tensor:
            infer_input.data = tensor["data"]
        elif isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            if offset + size > len(body):
                raise InvalidInput(f"input '{name}' claims {size} binary bytes past the body's end")
            infer_input._raw_data = body[offset : offset + size]
            offset += size
        else:
            raise InvalidInput(f"input '{name}' has neither 'data' nor 'binary_data_size' (a non-negative integer)")
        infer_inputs.append(infer_input)
    if offset != len(body):
        raise InvalidInput(f"{len(body) - offset} byte(s) after the last binary input: the binary_data_size "
                           "values and Inference-Header-Content-Length do not add up to the body's length")
    outputs = header.get("outputs")
    requested = None
    if outputs is not None:
        if not isinstance(outputs, list):
            raise InvalidInput('"outputs" must be a list of objects with a "name"')
        requested = []
        for index, output in enumerate(outputs):
            if not isinstance(output, dict) or not isinstance(output.get("name"), str):
                raise InvalidInput(f'outputs[{index}] must be an object with a "name" string')
            output_parameters = _optional_object(output.get("parameters"), f"outputs[{index}].parameters")
            requested.append(RequestedOutput(name=output["name"], parameters=output_parameters))
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput('"id" must be a string')
    return InferRequest(
        model_name=model_name,
        infer_inputs=infer_inputs,
        request_id=request_id,
        parameters=_optional_object(header.get("parameters"), "parameters"),
        request_outputs=requested,
    )


def _is_shape(value: Any) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in value)


def _optional_object(value: Any, where: str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object")
    return value


def decode_request(
    request: InferRequest, inputs: Sequence[InputSpec], outputs: Sequence[OutputSpec], max_items: int
) -> WireRequest:
    specs = {spec.name: spec for spec in inputs}
    columns: dict[str, list[bytes | str]] = {}
    for tensor in request.inputs:
        spec = specs.get(tensor.name)
        if spec is None:
            raise InvalidInput(f"unknown input '{tensor.name}'; this model takes {sorted(specs)}")
        if tensor.name in columns:
            raise InvalidInput(f"input '{tensor.name}' is given twice")
        columns[tensor.name] = _elements(tensor, spec, max_items)
    for spec in inputs:
        if spec.name not in columns and not spec.optional:
            raise InvalidInput(f"missing input '{spec.name}' (BYTES, shape [N])")
    counts = {name: len(values) for name, values in columns.items()}
    if len(set(counts.values())) > 1:
        raise InvalidInput(f"all inputs must have the same number of elements, got {counts}")
    count = next(iter(counts.values()))
    items: list[RawItem] = [{name: values[i] for name, values in columns.items()} for i in range(count)]

    parameters = to_http_parameters(request.parameters) if request.parameters else {}
    known_outputs = {spec.name for spec in outputs}
    requested: dict[str, bool] | None = None
    if request.request_outputs:
        requested = {}
        for output in request.request_outputs:
            if output.name not in known_outputs:
                raise InvalidInput(f"unknown output '{output.name}'; this model has {sorted(known_outputs)}")
            if output.name in requested:
                raise InvalidInput(f"output '{output.name}' is requested twice")
            requested[output.name] = bool(output.binary_data)
    return WireRequest(
        items=items,
        parameters={k: v for k, v in parameters.items() if k not in PROTOCOL_PARAMETERS},
        protocol="grpc" if request.from_grpc else "v2",
        requested_outputs=requested,
        binary_outputs=bool(request.use_binary_outputs),
    )


def _elements(tensor: InferInput, spec: InputSpec, max_items: int) -> list[bytes | str]:
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"input '{tensor.name}' must have datatype BYTES, got {tensor.datatype}")
    shape = list(tensor.shape)
    if len(shape) != 1 or shape[0] < 1:
        raise InvalidInput(f"input '{tensor.name}' must have shape [N] with N >= 1, got {shape}")
    if shape[0] > max_items:
        raise InvalidInput(f"{shape[0]} items in one request; the limit is {max_items}")
    if tensor._raw_data is not None:
        try:
            values = list(deserialize_bytes_tensor(tensor._raw_data))
        except struct.error:
            raise InvalidInput(f"input '{tensor.name}': malformed binary BYTES tensor") from None
    else:
        data = tensor.data
        values = list(data) if isinstance(data, (list, tuple, np.ndarray)) else []
    if len(values) != shape[0]:
        raise InvalidInput(f"input '{tensor.name}' has shape {shape} but {len(values)} element(s)")
    return [_element(value, tensor.name, index, spec) for index, value in enumerate(values)]


def _element(value: Any, name: str, index: int, spec: InputSpec) -> bytes | str:
    field = f"{name}[{index}]"
    if spec.kind == "image":
        if isinstance(value, str):
            return decode_base64(value, field)
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        raise InvalidInput(f"{field} must be a base64 string (JSON) or raw bytes (binary)")
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"{field} is not valid UTF-8") from None
    if isinstance(value, str):
        return validate_text(value, field, spec)
    raise InvalidInput(f"{field} must be a string")


def encode_response(
    wire: WireRequest,
    results: Sequence[Mapping[str, Any]],
    outputs: Sequence[OutputSpec],
    model_name: str,
    request_id: str | None,
) -> InferResponse:
    infer_outputs = []
    for spec in outputs:
        binary = wire.binary_outputs if wire.requested_outputs is None else wire.requested_outputs.get(spec.name)
        if wire.requested_outputs is not None and spec.name not in wire.requested_outputs:
            continue
        # gRPC carries raw bytes; REST JSON needs text, so binary payloads are base64-encoded there.
        text_only = wire.protocol == "v2" and not binary
        array = _column([result[spec.name] for result in results], spec, text_only)
        # A fixed-size vector's element order travels with the tensor (v2 metadata has no room for it).
        parameters = {"element_names": ",".join(spec.element_names)} if spec.element_names else None
        output = InferOutput(spec.name, list(array.shape), spec.datatype, parameters=parameters)
        # Raw form for every protocol: KServe's gRPC encoder cannot take numpy data directly, and
        # its REST encoder converts raw data to JSON when the caller did not ask for binary.
        output.set_data_from_numpy(array, binary_data=True)
        infer_outputs.append(output)
    requested = (
        [RequestedOutput(name, {"binary_data": binary}) for name, binary in wire.requested_outputs.items()]
        if wire.requested_outputs is not None
        else None
    )
    return InferResponse(
        response_id=request_id or "",
        model_name=model_name,
        infer_outputs=infer_outputs,
        use_binary_outputs=wire.binary_outputs,
        requested_outputs=requested,
    )


_NUMPY_TYPES = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_}


def _column(values: list[Any], spec: OutputSpec, text_only: bool) -> np.ndarray:
    if spec.datatype != "BYTES":
        return np.asarray(values, dtype=_NUMPY_TYPES[spec.datatype])
    encoded = np.asarray(values, dtype=object)
    flat = encoded.reshape(-1)
    for i, value in enumerate(flat):
        flat[i] = _bytes_element(value, text_only)
    return encoded


def _bytes_element(value: Any, text_only: bool) -> bytes | str:
    if isinstance(value, EncodedImage):
        return base64.b64encode(value.data).decode("ascii") if text_only else value.data
    if isinstance(value, str):
        return value if text_only else value.encode("utf-8")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii") if text_only else value
    raise TypeError(f"cannot encode {type(value).__name__} as a BYTES element")
