"""KServe v1 protocol: ``{"instances": [...], "parameters": {...}}`` <-> ``{"predictions": [...]}``.

An image is ``{"b64": "<base64>"}`` (the TensorFlow Serving convention KServe follows), a bare base64 string, or
``{"url": "https://..."}`` (an image the server fetches: `ImageURL`); a text input is a string.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from predictors.codecs.images import EncodedImage
from predictors.codecs.text import validate_text
from predictors.codecs.types import ImageURL, InputSpec, OutputSpec, RawItem, WireRequest
from predictors.errors import InvalidInput


def decode_base64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"'{field}' is not valid base64") from None


def decode_request(body: Any, inputs: Sequence[InputSpec], max_items: int) -> WireRequest:
    if not isinstance(body, Mapping):
        raise InvalidInput('the v1 request body must be a JSON object with an "instances" list')
    unknown = set(body) - {"instances", "parameters"}
    if unknown:
        raise InvalidInput(f"unknown top-level field(s) {sorted(unknown)}; expected 'instances', 'parameters'")
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('"instances" must be a non-empty list')
    if len(instances) > max_items:
        raise InvalidInput(f"{len(instances)} instances in one request; the limit is {max_items}")
    parameters = body.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, Mapping):
        raise InvalidInput('"parameters" must be a JSON object')
    items = [_decode_instance(instance, index, inputs) for index, instance in enumerate(instances)]
    return WireRequest(items=items, parameters=dict(parameters), protocol="v1")


def _decode_instance(instance: Any, index: int, inputs: Sequence[InputSpec]) -> RawItem:
    where = f"instances[{index}]"
    if not isinstance(instance, Mapping):
        raise InvalidInput(f"{where} must be an object with the field(s) {[spec.name for spec in inputs]}")
    known = {spec.name for spec in inputs}
    unknown = set(instance) - known
    if unknown:
        raise InvalidInput(f"{where} has unknown field(s) {sorted(unknown)}; expected {sorted(known)}")
    item: RawItem = {}
    for spec in inputs:
        value = instance.get(spec.name)
        field = f"{where}.{spec.name}"
        if value is None:
            if spec.optional:
                continue
            raise InvalidInput(f"{field} is missing")
        if spec.kind == "image":
            item[spec.name] = _image(value, field)
        else:
            if not isinstance(value, str):
                raise InvalidInput(f"{field} must be a string")
            item[spec.name] = validate_text(value, field, spec)
    return item


def _image(value: Any, field: str) -> bytes | ImageURL:
    if isinstance(value, Mapping) and set(value) == {"url"} and isinstance(value["url"], str):
        return ImageURL(value["url"])  # fetched by the server before the model sees it (images by URL)
    if isinstance(value, Mapping) and set(value) == {"b64"} and isinstance(value["b64"], str):
        value = value["b64"]
    if not isinstance(value, str):
        raise InvalidInput(f'{field} must be {{"b64": "<base64>"}}, a base64 string or {{"url": "<image URL>"}}')
    return decode_base64(value, field)


def encode_response(results: Sequence[Mapping[str, Any]], outputs: Sequence[OutputSpec]) -> dict[str, Any]:
    named = {spec.name: spec.element_names for spec in outputs if spec.element_names}
    return {
        "predictions": [
            {name: _to_json(_named(value, named.get(name))) for name, value in result.items()} for result in results
        ]
    }


def _named(value: Any, names: tuple[str, ...] | None) -> Any:
    if not names:
        return value
    return dict(zip(names, _to_json(value), strict=True))


def _to_json(value: Any) -> Any:
    if isinstance(value, EncodedImage):
        return {"b64": base64.b64encode(value.data).decode("ascii")}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_to_json(element) for element in value]
    if isinstance(value, Mapping):
        return {key: _to_json(element) for key, element in value.items()}
    return value
