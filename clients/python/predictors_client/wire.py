"""The Open Inference Protocol (KServe v2) over REST: JSON, and JSON plus the binary tensor extension.

Every input of the server's models is a 1-D ``BYTES`` tensor of shape ``[N]``. Over the binary
extension the request body is a JSON header followed by each tensor's raw bytes (each element as a
4-byte little-endian length and its bytes), the header's length in ``Inference-Header-Content-Length``;
nothing is base64-encoded. Over JSON, binary elements are base64 strings and text elements plain strings.
Outputs come back the same way (``binary_data_output``), each with its datatype and shape.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from predictors_client.errors import UnexpectedResponse

Protocol = Literal["binary", "json"]
HEADER_LENGTH = "Inference-Header-Content-Length"

#: fixed-size datatypes: struct format character and size in bytes (little-endian on the wire)
_FIXED = {
    "BOOL": ("?", 1),
    "UINT8": ("B", 1), "UINT16": ("H", 2), "UINT32": ("I", 4), "UINT64": ("Q", 8),
    "INT8": ("b", 1), "INT16": ("h", 2), "INT32": ("i", 4), "INT64": ("q", 8),
    "FP16": ("e", 2), "FP32": ("f", 4), "FP64": ("d", 8),
}

Element = bytes | str


@dataclass
class Tensor:
    """One output tensor: `data` is flat, in row-major order (BYTES elements are bytes over the binary
    extension; over JSON they are the server's strings, base64 for binary content)."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]
    parameters: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[list[Any]]:
        """The elements grouped by the first (batch) dimension."""
        count = self.shape[0] if self.shape else 1
        width = len(self.data) // count if count else 0
        return [self.data[i * width:(i + 1) * width] for i in range(count)]

    def as_numpy(self) -> Any:
        """The tensor as a numpy array (needs numpy: `pip install vision-predictors-client[numpy]`)."""
        import numpy as np

        dtype = object if self.datatype == "BYTES" else np.dtype(_FIXED[self.datatype][0]).newbyteorder("<")
        return np.asarray(self.data, dtype=dtype).reshape(self.shape)


@dataclass
class InferResult:
    """The answer of a generic `infer` call: output tensors by name, in the server's order."""

    model_name: str
    outputs: dict[str, Tensor]
    request_id: str | None = None

    def __getitem__(self, name: str) -> Tensor:
        return self.outputs[name]


@dataclass(frozen=True)
class EncodedRequest:
    content: bytes
    headers: dict[str, str]


def encode_request(
    inputs: Mapping[str, Sequence[Element]], parameters: Mapping[str, Any], protocol: Protocol
) -> EncodedRequest:
    tensors: list[dict[str, Any]] = []
    if protocol == "json":
        for name, values in inputs.items():
            data = [v if isinstance(v, str) else base64.b64encode(v).decode("ascii") for v in values]
            tensors.append({"name": name, "datatype": "BYTES", "shape": [len(values)], "data": data})
        body = {"inputs": tensors, "parameters": dict(parameters)} if parameters else {"inputs": tensors}
        return EncodedRequest(json.dumps(body).encode(), {"Content-Type": "application/json"})
    chunks: list[bytes] = []
    for name, values in inputs.items():
        raw = b"".join(_bytes_element(v) for v in values)
        tensors.append({"name": name, "datatype": "BYTES", "shape": [len(values)],
                        "parameters": {"binary_data_size": len(raw)}})
        chunks.append(raw)
    header = json.dumps({"inputs": tensors, "parameters": {**parameters, "binary_data_output": True}}).encode()
    return EncodedRequest(
        header + b"".join(chunks),
        {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))},
    )


def _bytes_element(value: Element) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return struct.pack("<I", len(data)) + data


def decode_response(body: bytes, header_length: str | None, request_id: str | None) -> InferResult:
    """Parse a v2 answer, JSON or JSON header plus binary outputs."""
    try:
        json_length = int(header_length) if header_length is not None else len(body)
        document = json.loads(body[:json_length])
    except (ValueError, TypeError) as error:
        raise UnexpectedResponse(f"the server's v2 answer could not be read: {error!r}", status=200,
                                 request_id=request_id) from None
    return decode_document(document, body, json_length, request_id)


def decode_document(document: Any, body: bytes, offset: int, request_id: str | None) -> InferResult:
    """A v2 answer already parsed from JSON; binary outputs, if any, are in `body` from `offset` on."""
    try:
        outputs = document["outputs"]
        tensors: dict[str, Tensor] = {}
        for output in outputs:
            parameters = dict(output.get("parameters") or {})
            shape = [int(d) for d in output["shape"]]
            datatype = str(output["datatype"])
            size = parameters.pop("binary_data_size", None)
            if size is not None:
                data = _decode_binary(body[offset:offset + int(size)], datatype, _count(shape))
                offset += int(size)
            else:
                data = _flatten(output["data"])
            tensors[output["name"]] = Tensor(output["name"], datatype, shape, data, parameters)
        return InferResult(str(document.get("model_name", "")), tensors, request_id)
    except (ValueError, KeyError, TypeError, struct.error) as error:
        raise UnexpectedResponse(f"the server's v2 answer could not be read: {error!r}", status=200,
                                 request_id=request_id) from None


def _count(shape: Sequence[int]) -> int:
    count = 1
    for dimension in shape:
        count *= dimension
    return count


def _decode_binary(raw: bytes, datatype: str, count: int) -> list[Any]:
    if datatype == "BYTES":
        values: list[Any] = []
        offset = 0
        while offset < len(raw):
            (length,) = struct.unpack_from("<I", raw, offset)
            values.append(raw[offset + 4:offset + 4 + length])
            offset += 4 + length
    else:
        code, size = _FIXED[datatype]
        values = list(struct.unpack(f"<{len(raw) // size}{code}", raw))
    if len(values) != count:
        raise ValueError(f"{datatype} tensor holds {len(values)} elements, its shape says {count}")
    return values


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    for value in data:
        flat.extend(_flatten(value) if isinstance(value, list) else [value])
    return flat
