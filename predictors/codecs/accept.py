"""``Accept`` on the v1 route: the image itself instead of JSON, for a model with an encoded-image output.

A model declares such an output with `OutputSpec.image_format_parameter` (face-enhancement's ``image``, encoded
as its ``output_format`` parameter says). When the caller's ``Accept`` prefers an image type to JSON
(``image/*``, ``image/png``; q-values honoured, JSON wins ties, so no Accept and curl's ``*/*`` keep JSON), the
answer is that image: its bytes as the body, its ``Content-Type``, and the item's other scalar outputs as
``X-<Output-Name>`` headers (``X-Quality-Score``, ``X-Needs-Review``). The encoding is the request's format
parameter, or, when the request leaves it out, the best one ``Accept`` names.

406 NOT_ACCEPTABLE, before any model work, when that cannot be: the model returns no image, the request holds
several items (one body carries one image), or ``Accept`` names only encodings the model does not make.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from predictors.codecs.images import OUTPUT_FORMATS, EncodedImage
from predictors.codecs.types import OutputSpec, WireRequest
from predictors.errors import NotAcceptable

JSON = "application/json"
IMAGE_TYPES = {fmt: f"image/{fmt}" for fmt in OUTPUT_FORMATS}


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    """(media range, q) of an Accept header; a range with an unreadable q counts as q=0."""
    ranges = []
    for entry in accept.split(","):
        media, *options = (part.strip() for part in entry.split(";"))
        quality = 1.0
        for option in options:
            key, _, value = option.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media:
            ranges.append((media.lower(), quality if 0.0 <= quality <= 1.0 else 0.0))
    return ranges


def _quality(ranges: Sequence[tuple[str, float]], media: str) -> float:
    """The q Accept gives `media`: that of the most specific range matching it (RFC 9110 12.5.1), else 0."""
    kind = media.split("/", 1)[0]
    for candidate in (media, f"{kind}/*", "*/*"):
        matches = [quality for media_range, quality in ranges if media_range == candidate]
        if matches:
            return max(matches)
    return 0.0


def image_formats_preferred(accept: str | None) -> tuple[str, ...] | None:
    """None when JSON is to be answered; else the image encodings (of `OUTPUT_FORMATS`) Accept takes, best first
    (empty when it names only image types no model here makes, such as image/webp)."""
    if not accept:
        return None
    ranges = _media_ranges(accept)
    image = max((quality for media, quality in ranges if media.startswith("image/")), default=0.0)
    if image <= _quality(ranges, JSON):
        return None
    acceptable = [fmt for fmt, media in IMAGE_TYPES.items() if _quality(ranges, media) > 0]
    return tuple(sorted(acceptable, key=lambda fmt: -_quality(ranges, IMAGE_TYPES[fmt])))


def negotiate(wire: WireRequest, accept: str | None, outputs: Sequence[OutputSpec]) -> None:
    """Marks `wire` to be answered with its image when Accept asks for it (module docstring); 406 if it cannot be."""
    formats = image_formats_preferred(accept)
    if formats is None or wire.protocol != "v1":
        return
    image_outputs = [spec for spec in outputs if spec.image_format_parameter]
    if len(image_outputs) != 1:
        raise NotAcceptable(f"Accept asks for an image ({accept!r}); this model answers {JSON} only")
    if len(wire.items) != 1:
        raise NotAcceptable(f"Accept asks for an image and the request holds {len(wire.items)} items: an image "
                            f"answer carries one; send one image, or accept {JSON}")
    parameter = image_outputs[0].image_format_parameter
    assert parameter is not None
    chosen = wire.parameters.get(parameter)
    offered = ", ".join(IMAGE_TYPES.values())
    if chosen is None:
        if not formats:
            raise NotAcceptable(f"Accept {accept!r} names no image type this model makes ({offered}) nor {JSON}")
        wire.parameters[parameter] = formats[0]
    elif chosen in IMAGE_TYPES and chosen not in formats:
        raise NotAcceptable(f"{parameter}={chosen!r} makes an {IMAGE_TYPES[chosen]}, which Accept {accept!r} "
                            f"does not take")
    # any other value of the parameter is the model's to refuse (INVALID_INPUT), as without Accept
    wire.image_answer = True


def encode_image_answer(result: Mapping[str, Any], outputs: Sequence[OutputSpec]) -> tuple[bytes, dict[str, str]]:
    """The body (the encoded image) and the headers (its Content-Type, the other scalar outputs) of one item."""
    spec = next(spec for spec in outputs if spec.image_format_parameter)
    image = result[spec.name]
    if not isinstance(image, EncodedImage):
        raise TypeError(f"output {spec.name!r} is declared an encoded image, got {type(image).__name__}")
    headers = {"Content-Type": IMAGE_TYPES[image.format]}
    for name, value in result.items():
        text = _header_value(value)
        if name != spec.name and text is not None:
            headers["X-" + "-".join(word.capitalize() for word in name.split("_"))] = text
    return image.data, headers


def _header_value(value: Any) -> str | None:
    """A scalar output as header text (booleans as JSON spells them); None for what is not a scalar."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return None
