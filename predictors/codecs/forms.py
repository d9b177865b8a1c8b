"""Uploads on the v1 route: a ``multipart/form-data`` body or a raw image body becomes the same `WireRequest` as
a v1 JSON body (`codecs.v1`), with the same limits, validation and error codes.

- ``multipart/form-data``: every ``image`` part (a file, or a plain field holding the bytes) is an image; the
  model's text inputs (``hypothesis``, ``premise``) and the request's parameters (``top_k``, ``timeout_ms`` ...)
  are fields.
- a raw image body (``Content-Type: image/jpeg|png|webp|bmp``) is the one image.
- an image may instead be an ``image_url`` field (``<input>_url``): an image the server fetches (`ImageURL`).
- either way the query string may carry text inputs and parameters too (for a raw body it is the only place).

An input given once goes with every instance; given N times, its i-th value goes with the i-th instance: N
images are N instances (one batched request), and so is one image with N hypotheses. Parameters are text on this
wire: each is typed from its text by the model's own `Parameters` (pydantic's string validation: ``3`` is an
integer, ``true``/``false`` are booleans, ``3.5`` is not an integer), after which it is checked as strictly as a
JSON one. An unknown field, a parameter given twice or a part without a name is INVALID_INPUT.
"""

from __future__ import annotations

import functools
import logging
import reprlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError, create_model
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from predictors.codecs.images import SUPPORTED_FORMATS
from predictors.codecs.text import validate_text
from predictors.codecs.types import COMMON_PARAMETERS, ImageURL, InputSpec, RawItem, WireRequest
from predictors.errors import InvalidInput, PredictorError, UnsupportedMediaType

if TYPE_CHECKING:  # defined for type checkers only
    from python_multipart.multipart import MultipartCallbacks

MULTIPART = "multipart/form-data"
#: raw image bodies by Content-Type (``image/jpg`` is not registered, but clients send it)
RAW_IMAGE_TYPES = frozenset({f"image/{fmt.lower()}" for fmt in SUPPORTED_FORMATS} | {"image/jpg"})
#: bodies read as JSON: JSON itself, none stated, and curl -d's default (KServe's own examples use it)
JSON_TYPES = frozenset({"", "application/json", "application/x-www-form-urlencoded"})
ACCEPTED_BODIES = "application/json, multipart/form-data or an image (image/jpeg, image/png, image/webp, image/bmp)"

# The parser logs a warning before each error it raises; the error becomes our INVALID_INPUT (which the edge
# logs), so its warnings would only repeat a client's mistake in the server log.
logging.getLogger("python_multipart.multipart").setLevel(logging.ERROR)

_shown = reprlib.Repr()
_shown.maxstring, _shown.maxlist = 60, 8


@dataclass(frozen=True)
class Upload:
    """A v1 request body that is not JSON, still encoded: the data plane hands it to the model's codec step."""

    body: bytes
    media_type: str  # multipart/form-data or one of RAW_IMAGE_TYPES
    content_type: str  # the whole header (the boundary is a parameter of it)
    query: str = ""


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def upload_of(body: bytes, content_type: str | None, query: str = "") -> Upload | None:
    """`body` as an `Upload` when its Content-Type says it is one; None when it is to be read as JSON.

    An image or multipart type that is not taken here is refused at once: it was never going to be JSON."""
    media = media_type(content_type)
    if media == MULTIPART or media in RAW_IMAGE_TYPES:
        return Upload(body, media, content_type or "", query)
    if media.startswith(("image/", "multipart/")):
        raise unsupported(media)
    return None


def not_json(content_type: str | None, error: Exception) -> PredictorError:
    """The error for a body that was read as JSON and is not: malformed JSON (INVALID_INPUT) when it was sent as
    JSON (or as curl -d's form-urlencoded, or untyped); else its Content-Type is not one the route takes."""
    media = media_type(content_type)
    if media == "application/json" or media.endswith("+json"):
        return InvalidInput(f"the request body is not valid JSON: {error}")
    if media in JSON_TYPES:  # most often an image sent without its type (curl --data-binary @photo.jpg)
        return InvalidInput(f"the request body is not valid JSON: {error}; to send an image, state its "
                            "Content-Type (image/jpeg ...) or send multipart/form-data")
    return unsupported(media)


def unsupported(media: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(f"Content-Type {_shown.repr(media)} is not accepted here; send {ACCEPTED_BODIES}")


def decode_upload(upload: Upload, inputs: Sequence[InputSpec], parameters: type[BaseModel],
                  max_items: int) -> WireRequest:
    """The upload as the typed request a v1 JSON body with the same content would make (module docstring)."""
    specs = {spec.name: spec for spec in inputs}
    url_fields = {f"{spec.name}_url": spec.name for spec in inputs if spec.kind == "image"}
    parameter_names = set(parameters.model_fields) | COMMON_PARAMETERS
    # bounds the parser's work before anything is counted: a body of 20 MiB of empty parts is refused early
    max_fields = max_items * len(specs) + len(parameter_names)
    if upload.media_type == MULTIPART:
        fields = _multipart_fields(upload, max_fields)
    else:
        fields = [(_raw_image_input(inputs), upload.body)]
    fields += _query_fields(upload.query, specs, max_fields)
    values: dict[str, list[bytes | ImageURL]] = defaultdict(list)
    for name, value in fields:
        values[name].append(value)
    unknown = set(values) - set(specs) - parameter_names - set(url_fields)
    if unknown:
        raise InvalidInput(f"unknown form field(s) {_shown.repr(sorted(unknown))}; expected the inputs "
                           f"{sorted(specs)} (an image may be an {sorted(url_fields)} field instead) and the "
                           f"parameters {sorted(parameter_names)}")
    for url_field, image in url_fields.items():
        if url_field in values:
            if image in values:
                raise InvalidInput(f"give either {image!r} or {url_field!r}, not both")
            values[image] = [ImageURL(_text(_bytes(value), url_field)) for value in values.pop(url_field)]
    repeated = sorted(name for name in parameter_names if len(values.get(name, ())) > 1)
    if repeated:
        raise InvalidInput(f"parameter(s) {repeated} given more than once")
    given = {name: _text(_bytes(values[name][0]), f"parameters.{name}") for name in parameter_names & values.keys()}
    items = _instances({name: value for name, value in values.items() if name in specs}, inputs, max_items)
    return WireRequest(items=items, parameters=_typed_parameters(given, parameters), protocol="v1")


def _raw_image_input(inputs: Sequence[InputSpec]) -> str:
    images = [spec.name for spec in inputs if spec.kind == "image"]
    if len(images) != 1:
        raise InvalidInput(f"a raw image body needs a model with one image input; this one has {images}: "
                           "send multipart/form-data")
    return images[0]


def _instances(values: dict[str, list[bytes | ImageURL]], inputs: Sequence[InputSpec],
               max_items: int) -> list[RawItem]:
    missing = [spec.name for spec in inputs if not spec.optional and spec.name not in values]
    if missing:
        raise InvalidInput(f"form field(s) {missing} missing; this model's inputs are {[s.name for s in inputs]}")
    count = max((len(value) for value in values.values()), default=0)
    if count == 0:
        raise InvalidInput(f"no input fields; this model's inputs are {[s.name for s in inputs]}")
    if count > max_items:
        raise InvalidInput(f"{count} instances in one request; the limit is {max_items}")
    for name, value in values.items():
        if len(value) not in (1, count):
            raise InvalidInput(f"{name!r} is given {len(value)} times for {count} instances: give it once (for "
                               f"every instance) or {count} times (one per instance, in order)")
    items: list[RawItem] = []
    for index in range(count):
        item: RawItem = {}
        for spec in inputs:
            if spec.name not in values:
                continue
            value = values[spec.name]
            data = value[index] if len(value) > 1 else value[0]
            field = f"{spec.name}[{index}]"
            if spec.kind == "image":
                item[spec.name] = data
            else:
                assert isinstance(data, bytes)
                item[spec.name] = validate_text(_text(data, field), field, spec)
        items.append(item)
    return items


def _bytes(value: bytes | ImageURL) -> bytes:
    assert isinstance(value, bytes)  # only image fields hold URLs
    return value


def _text(data: bytes, field: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{field} is not UTF-8 text") from None


@functools.cache
def _text_parameters(parameters: type[BaseModel]) -> type[BaseModel]:
    """The model's `Parameters` plus the common ones, to type them from text (`request_deadline` checks the
    timeout's range)."""
    return create_model(f"Text{parameters.__name__}", __base__=parameters, timeout_ms=(float, 0.0))


def _typed_parameters(given: dict[str, str], parameters: type[BaseModel]) -> dict[str, object]:
    try:
        typed = _text_parameters(parameters).model_validate_strings(given, strict=True)
    except ValidationError as error:
        raise InvalidInput("; ".join(f"parameters.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                     for e in error.errors())) from None
    return {name: getattr(typed, name) for name in given}


def _query_fields(query: str, specs: dict[str, InputSpec], max_fields: int) -> list[tuple[str, bytes]]:
    if not query:
        return []
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=max_fields)
    except UnicodeDecodeError:
        raise InvalidInput("the query string is not UTF-8 (after percent-decoding)") from None
    except ValueError:
        raise InvalidInput(f"more than {max_fields} fields in the query string") from None
    images = sorted(name for name, _ in pairs if name in specs and specs[name].kind == "image")
    if images:
        raise InvalidInput(f"image input(s) {images} cannot travel in the query string: send them as the body")
    return [(name, value.encode("utf-8")) for name, value in pairs]


def _multipart_fields(upload: Upload, max_fields: int) -> list[tuple[str, bytes]]:
    _, options = parse_options_header(upload.content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidInput("multipart/form-data without a boundary parameter in its Content-Type")
    reader = _PartReader(max_fields)
    try:
        parser = MultipartParser(boundary, reader.callbacks())
        parser.write(upload.body)
    except FormParserError as error:
        raise InvalidInput(f"malformed multipart/form-data body: {error}") from None
    if parser.state != MultipartState.END:
        raise InvalidInput("the multipart/form-data body ends before its closing boundary")
    return reader.fields


class _PartReader:
    """Collects the parts python-multipart's streaming parser reports: (field name, bytes) each."""

    def __init__(self, max_fields: int) -> None:
        self.max_fields = max_fields
        self.fields: list[tuple[str, bytes]] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition: bytes | None = None
        self._name = ""
        self._data: list[bytes] = []

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self._data.append(data[start:end]),
            "on_part_end": lambda: self.fields.append((self._name, b"".join(self._data))),
        }

    def _part_begin(self) -> None:
        if len(self.fields) >= self.max_fields:
            raise InvalidInput(f"more than {self.max_fields} parts in the multipart/form-data body")
        self._disposition, self._name, self._data = None, "", []

    def _header_end(self) -> None:
        if bytes(self._header_name).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        # latin-1 keeps every byte; the name itself is UTF-8 (RFC 7578 section 5.1)
        kind, options = parse_options_header((self._disposition or b"").decode("latin-1"))
        name = options.get(b"name")
        if kind != b"form-data" or name is None:
            raise InvalidInput("a multipart part without 'Content-Disposition: form-data; name=...'")
        self._name = _text(name, "a multipart part's name")
