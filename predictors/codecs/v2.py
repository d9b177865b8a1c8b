"""Open Inference Protocol (KServe v2): REST JSON, REST with the binary tensor extension, and gRPC.

Every input is a 1-D ``BYTES`` tensor of shape ``[N]``. Over JSON an image element is a base64
string and a text element a plain string; over the binary extension and gRPC an element is raw bytes
(encoded image, or UTF-8 text). An image input ``image`` may instead be given as ``image_url``: URL strings of
images the server fetches (`ImageURL`; docs/protocol.md, "Images by URL").
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np
import orjson
from kserve.protocol.grpc.grpc_predict_v2_pb2 import InferParameter, ModelInferResponse
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput, deserialize_bytes_tensor

from predictors.codecs.images import EncodedImage
from predictors.codecs.text import validate_text
from predictors.codecs.types import ImageURL, InputSpec, OutputSpec, RawItem, WireRequest
from predictors.codecs.v1 import decode_base64
from predictors.errors import InvalidInput
from predictors.kserve_compat import parameter_values, raw_data, set_raw_data

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
            set_raw_data(infer_input, body[offset : offset + size])
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
    #: images by URL: an input `<image input>_url` of URL strings stands for the image input
    url_inputs = {f"{spec.name}_url": spec for spec in inputs if spec.kind == "image"}
    columns: dict[str, list[bytes | str | ImageURL]] = {}
    for tensor in request.inputs:
        spec = specs.get(tensor.name)
        by_url = spec is None and tensor.name in url_inputs
        if by_url:
            spec = url_inputs[tensor.name]
        if spec is None:
            raise InvalidInput(f"unknown input '{tensor.name}'; this model takes {sorted(specs)} (an image input "
                               f"may be given as {sorted(url_inputs)} instead)")
        if spec.name in columns:
            raise InvalidInput(f"input '{spec.name}' is given twice (as itself or as '{spec.name}_url')")
        elements = _elements(tensor, spec, max_items, by_url)
        columns[spec.name] = elements
    for spec in inputs:
        if spec.name not in columns and not spec.optional:
            raise InvalidInput(f"missing input '{spec.name}' (BYTES, shape [N])")
    counts = {name: len(values) for name, values in columns.items()}
    if len(set(counts.values())) > 1:
        raise InvalidInput(f"all inputs must have the same number of elements, got {counts}")
    count = next(iter(counts.values()))
    items: list[RawItem] = [{name: values[i] for name, values in columns.items()} for i in range(count)]

    parameters = parameter_values(request.parameters, "parameters")
    binary_outputs = _flag(parameters, "binary_data_output", "parameters")
    known_outputs = {spec.name for spec in outputs}
    requested: dict[str, bool] | None = None
    if request.request_outputs:
        requested = {}
        for index, output in enumerate(request.request_outputs):
            if output.name not in known_outputs:
                raise InvalidInput(f"unknown output '{output.name}'; this model has {sorted(known_outputs)}")
            if output.name in requested:
                raise InvalidInput(f"output '{output.name}' is requested twice")
            output_parameters = parameter_values(output.parameters, f"outputs[{index}].parameters")
            # `binary_data` on an output overrides `binary_data_output` (the binary tensor data extension)
            flag = _flag(output_parameters, "binary_data", f"outputs[{index}].parameters")
            requested[output.name] = binary_outputs if "binary_data" not in output_parameters else flag
    return WireRequest(
        items=items,
        parameters={k: v for k, v in parameters.items() if k not in PROTOCOL_PARAMETERS},
        protocol="grpc" if request.from_grpc else "v2",
        requested_outputs=requested,
        binary_outputs=binary_outputs,
        request_id=request.id or "",
        raw_outputs=bool(request.from_grpc and any(raw_data(tensor) is not None for tensor in request.inputs)),
    )


def _flag(parameters: Mapping[str, Any], name: str, where: str) -> bool:
    """A boolean parameter of the binary tensor data extension (absent: false)."""
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}.{name} must be a boolean, got {value!r}")
    return value


def _elements(tensor: InferInput, spec: InputSpec, max_items: int, by_url: bool) -> list[bytes | str | ImageURL]:
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"input '{tensor.name}' must have datatype BYTES, got {tensor.datatype}")
    shape = list(tensor.shape)
    if len(shape) != 1 or shape[0] < 1:
        raise InvalidInput(f"input '{tensor.name}' must have shape [N] with N >= 1, got {shape}")
    if shape[0] > max_items:
        raise InvalidInput(f"{shape[0]} items in one request; the limit is {max_items}")
    raw = raw_data(tensor)
    if raw is not None:
        try:
            values = list(deserialize_bytes_tensor(raw))
        except struct.error:
            raise InvalidInput(f"input '{tensor.name}': malformed binary BYTES tensor") from None
    else:
        data = tensor.data
        values = list(data) if isinstance(data, (list, tuple, np.ndarray)) else []
    if len(values) != shape[0]:
        raise InvalidInput(f"input '{tensor.name}' has shape {shape} but {len(values)} element(s)")
    if by_url:
        return [ImageURL(_url(value, f"{tensor.name}[{index}]")) for index, value in enumerate(values)]
    return [_element(value, tensor.name, index, spec) for index, value in enumerate(values)]


def _url(value: Any, field: str) -> str:
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"{field} is not valid UTF-8") from None
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a URL string")
    return value


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


@dataclass
class OutputTensor:
    """One output of an answer: its values (numpy, the item dimension first) and how it travels."""

    name: str
    datatype: str
    array: np.ndarray
    #: REST: after the JSON header as binary-extension bytes (else JSON `data`); gRPC: in raw_output_contents
    binary: bool
    parameters: dict[str, Any] | None = None


@dataclass
class V2Response:
    """A v2 answer, encoded for REST (`rest_body`: JSON, or JSON header + binary extension) or gRPC (`to_grpc`).

    Only what the protocol defines is sent: ``id`` only when the request had one (its value, unchanged), no
    ``model_version`` (models here are unversioned), no response ``parameters`` (none are defined).
    """

    model_name: str
    request_id: str
    outputs: list[OutputTensor] = field(default_factory=list)
    #: gRPC: answer in raw_output_contents (the request used raw_input_contents) rather than typed contents
    raw_outputs: bool = False

    def rest_document(self, binary_sizes: Mapping[str, int] | None = None) -> dict[str, Any]:
        """The JSON object of the REST answer (without the binary tensors that follow it)."""
        tensors = []
        for output in self.outputs:
            tensor: dict[str, Any] = {"name": output.name, "datatype": output.datatype,
                                      "shape": list(output.array.shape)}
            parameters = dict(output.parameters or {})
            if output.binary:
                parameters["binary_data_size"] = (binary_sizes or {})[output.name]
            else:
                tensor["data"] = _json_data(output.array)
            if parameters:
                tensor["parameters"] = parameters
            tensors.append(tensor)
        document: dict[str, Any] = {"model_name": self.model_name}
        if self.request_id:
            document["id"] = self.request_id
        document["outputs"] = tensors
        return document

    def rest_body(self) -> tuple[bytes, int | None]:
        """The REST body and, when binary tensors follow the JSON, the JSON's length
        (``Inference-Header-Content-Length``)."""
        raw = {output.name: _raw_bytes(output.array, output.datatype) for output in self.outputs if output.binary}
        header = orjson.dumps(self.rest_document({name: len(data) for name, data in raw.items()}))
        if not raw:
            return header, None
        return header + b"".join(raw.values()), len(header)

    def to_rest(self) -> tuple[dict[str, Any] | bytes, int | None]:
        """`rest_body` with the JSON answer parsed (the binary form stays bytes)."""
        body, json_length = self.rest_body()
        return (body, json_length) if json_length is not None else (orjson.loads(body), None)

    def to_grpc(self) -> ModelInferResponse:
        tensors = []
        raw_contents = []
        for output in self.outputs:
            tensor = ModelInferResponse.InferOutputTensor(
                name=output.name, datatype=output.datatype, shape=list(output.array.shape),
                parameters=grpc_parameters(output.parameters or {}))
            if self.raw_outputs:
                raw_contents.append(_raw_bytes(output.array, output.datatype))
            else:
                values = output.array.reshape(-1).tolist()
                if output.datatype == "BYTES":
                    values = [_utf8(value) for value in values]
                getattr(tensor.contents, _GRPC_CONTENTS[output.datatype]).extend(values)
            tensors.append(tensor)
        return ModelInferResponse(model_name=self.model_name, id=self.request_id, outputs=tensors,
                                  raw_output_contents=raw_contents)


#: the typed `InferTensorContents` field of each datatype the models answer with
_GRPC_CONTENTS = {"BYTES": "bytes_contents", "FP32": "fp32_contents", "INT32": "int_contents",
                  "INT64": "int64_contents", "BOOL": "bool_contents"}
_NUMPY_TYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
                                          "BOOL": np.dtype("?")}


def _json_data(array: np.ndarray) -> list[Any]:
    """Tensor data in JSON: flattened, row-major (`inference_rest.md`, "Tensor Data")."""
    return array.reshape(-1).tolist()


def _raw_bytes(array: np.ndarray, datatype: str) -> bytes:
    """The binary form of a tensor: little-endian, row-major; BYTES elements each after their 4-byte length."""
    if datatype == "BYTES":
        elements = [_utf8(element) for element in array.reshape(-1)]
        return b"".join(struct.pack("<I", len(element)) + element for element in elements)
    return np.ascontiguousarray(array, dtype=_NUMPY_TYPES[datatype]).tobytes()


def _utf8(element: bytes | str) -> bytes:
    return element.encode("utf-8") if isinstance(element, str) else element


def grpc_parameters(parameters: Mapping[str, Any]) -> dict[str, InferParameter]:
    """Parameters as gRPC `InferParameter`s (strings only are sent: the models' output parameters are text)."""
    converted = {}
    for key, value in parameters.items():
        if not isinstance(value, str):
            raise TypeError(f"output parameter {key!r} must be a string, got {type(value).__name__}")
        converted[key] = InferParameter(string_param=value)
    return converted


def encode_response(
    wire: WireRequest,
    results: Sequence[Mapping[str, Any]],
    outputs: Sequence[OutputSpec],
    model_name: str,
) -> V2Response:
    tensors = []
    for spec in outputs:
        if wire.requested_outputs is not None and spec.name not in wire.requested_outputs:
            continue
        binary = wire.binary_outputs if wire.requested_outputs is None else wire.requested_outputs[spec.name]
        # gRPC and the binary extension carry raw bytes; JSON needs text, so binary payloads are base64 there.
        text_only = wire.protocol == "v2" and not binary
        array = _column([result[spec.name] for result in results], spec, text_only)
        # A fixed-size vector's element order travels with the tensor (v2 metadata has no room for it).
        parameters = {"element_names": ",".join(spec.element_names)} if spec.element_names else None
        tensors.append(OutputTensor(spec.name, spec.datatype, array, binary and wire.protocol == "v2", parameters))
    return V2Response(model_name, wire.request_id, tensors, raw_outputs=wire.raw_outputs)


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
