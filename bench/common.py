"""Request bodies, per-model payloads and statistics shared by the load generator and the reports."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Sequence
from typing import Any

from devtools.images import sample_jpeg

# ---- request bodies: (path, body bytes, headers) ---------------------------------------------------

Request = tuple[str, bytes, dict[str, str]]


def v1_request(model: str, image: bytes) -> Request:
    return v1_instance_request(model, {"image": image})


def v2_json_request(model: str, image: bytes) -> Request:
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(image).decode("ascii")],
            }
        ]
    }
    return f"/v2/models/{model}/infer", json.dumps(body).encode(), {"content-type": "application/json"}


def v2_binary_body(image: bytes) -> tuple[bytes, int]:
    """The v2 binary tensor extension: JSON header, then the BYTES tensor (4-byte LE length + data)."""
    tensor = struct.pack("<I", len(image)) + image
    header = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"binary_data_size": len(tensor)},
            }
        ],
        "outputs": [
            {"name": "labels", "parameters": {"binary_data": True}},
            {"name": "scores", "parameters": {"binary_data": True}},
        ],
    }
    head = json.dumps(header).encode()
    return head + tensor, len(head)


def v2_binary_request(model: str, image: bytes) -> Request:
    body, head_length = v2_binary_body(image)
    return (
        f"/v2/models/{model}/infer",
        body,
        {
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(head_length),
        },
    )


def parse_v2_binary_response(body: bytes, head_length: int) -> dict[str, Any]:
    """Decode a binary-extension response (for sanity checks): output name -> list of values."""
    header = json.loads(body[:head_length])
    offset = head_length
    out: dict[str, Any] = {}
    for output in header["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            out[output["name"]] = output.get("data")
            continue
        chunk = body[offset : offset + size]
        offset += size
        if output["datatype"] == "BYTES":
            values, i = [], 0
            while i < len(chunk):
                (n,) = struct.unpack_from("<I", chunk, i)
                values.append(chunk[i + 4 : i + 4 + n].decode())
                i += 4 + n
            out[output["name"]] = values
        else:
            out[output["name"]] = list(struct.unpack(f"<{len(chunk) // 4}f", chunk))
    return out


# ---- statistics ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99/max/mean in milliseconds."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000.0, 3)

    return {
        "p50_ms": ms(percentile(seconds, 50)),
        "p90_ms": ms(percentile(seconds, 90)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds) if seconds else None),
        "mean_ms": ms(sum(seconds) / len(seconds) if seconds else None),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


# ---- per-model payloads -------------------------------------------------------------------------

#: what one request item of each predictor carries: the picture's size (width, height) and the text
#: inputs. Face enhancement gets a small portrait-sized picture (128x160): its GPEN pass is 512x512 per
#: face whatever the picture's size (the demo detector finds one face in every picture), and a small
#: picture keeps the x2 background super-resolution (RRDBNet on the whole picture) and the run bounded.
PAYLOADS: dict[str, dict[str, Any]] = {
    "general-recognition": {"image_size": (320, 240), "texts": {}},
    "image-classification": {"image_size": (320, 240), "texts": {}},
    "face-enhancement": {"image_size": (128, 160), "texts": {}},
    "visual-entailment": {
        "image_size": (320, 240),
        "texts": {"hypothesis": "two coloured shapes are on a plain background"},
    },
}


def model_instance(predictor: str, seed: int) -> dict[str, Any]:
    """One item for `predictor`: ``image`` as JPEG bytes plus its text inputs."""
    payload = PAYLOADS[predictor]
    return {"image": sample_jpeg(seed, payload["image_size"]), **payload["texts"]}


def v1_instance_request(model: str, instance: dict[str, Any], parameters: dict[str, Any] | None = None) -> Request:
    """v1 JSON with one instance: bytes fields as ``{"b64": ...}``, text fields as they are."""
    fields = {
        name: {"b64": base64.b64encode(value).decode("ascii")} if isinstance(value, bytes) else value
        for name, value in instance.items()
    }
    body: dict[str, Any] = {"instances": [fields]}
    if parameters:
        body["parameters"] = parameters
    return f"/v1/models/{model}:predict", json.dumps(body).encode(), {"content-type": "application/json"}
