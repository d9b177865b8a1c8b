"""Safe image decoding and encoding.

Decoding reads only the header before checking the pixel count, so a decompression bomb (a tiny file
that claims 100000x100000 pixels) is rejected before any pixel memory is allocated.

Truncated data is always refused. Pillow decides that from a process-wide flag,
``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``, which dependencies flip (ModelScope's OFA preprocessor module sets
it to True at import), so the decision here does not read it: a decoder that asks for bytes past the end
of the data had data missing, which is exactly when strict Pillow raises "image file is truncated".
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from predictors.errors import ImageTooLarge, InvalidImage, InvalidInput
from predictors.settings import ImageLimits

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
OUTPUT_FORMATS = {"jpeg": "JPEG", "png": "PNG"}

#: `decode_image`'s time per pixel on one core, the slowest variant measured of each format (docs/performance.md,
#: "What the server's defaults rest on"). Only for telling a cheap decode from an expensive one
#: (`estimated_decode_seconds`).
DECODE_SECONDS_PER_PIXEL = {"JPEG": 7e-9, "PNG": 15e-9, "WEBP": 26e-9, "BMP": 9e-9}
PROGRESSIVE_JPEG_SECONDS_PER_PIXEL = 17e-9
#: Beyond this many encoded bytes no decode is estimated cheap, whatever the header says (ancillary chunks,
#: many progressive scans and the like cost time in proportion to the bytes, not to the pixels).
CHEAP_DECODE_MAX_BYTES = 256 * 1024


class _EndAwareStream(io.BytesIO):
    """The encoded bytes, remembering whether a decoder asked for more after the last one was read."""

    read_past_end = False

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if not data and size is not None and size > 0:
            self.read_past_end = True
        return data


@dataclass(frozen=True)
class EncodedImage:
    """An encoded image result; the wire codecs send it as base64 (JSON) or raw bytes (binary, gRPC)."""

    data: bytes
    format: str  # "jpeg" | "png"


def decode_image(data: bytes, limits: ImageLimits, field: str = "image") -> Image.Image:
    """Decode JPEG/PNG/WebP/BMP bytes into an RGB image with EXIF orientation applied."""
    return _decoded(data, limits, field, scaled_down=False)


def check_image(data: bytes, limits: ImageLimits, field: str = "image") -> None:
    """Raise what `decode_image` raises for `data`, for less work: a JPEG's pixels are decoded at an eighth
    of its width and height (libjpeg's DCT scaling, Pillow's ``draft``). Scaling only changes the inverse
    DCT and what follows it; libjpeg still reads and entropy-decodes every coded bit, so truncated and
    corrupt data fail exactly as in a full decode (`tests/unit/codecs/test_images_fuzz.py` compares the two
    on generated, mutated and cut images). Other formats are decoded in full. A 320x240 baseline JPEG:
    0.08 ms against 0.45-0.49 ms, on one core here. For the submission of a job, whose pixels are decoded
    again, in full, when it runs."""
    _decoded(data, limits, field, scaled_down=True)


def _decoded(data: bytes, limits: ImageLimits, field: str, *, scaled_down: bool) -> Image.Image:
    if not data:
        raise InvalidImage(f"'{field}' is empty")
    # Pillow warns (and beyond twice its own limit raises) about huge images before we can check them;
    # our own limit (below, from the header only) is the one that answers.
    stream = _EndAwareStream(data)
    try:
        image = Image.open(stream, formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"'{field}' is too large: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InvalidImage(
            f"'{field}' is not a decodable image (supported: {', '.join(SUPPORTED_FORMATS)})"
        ) from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"'{field}' has {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}"
        )
    if limits.max_side and max(width, height) > limits.max_side:
        raise ImageTooLarge(
            f"'{field}' is {width}x{height}; the longest side may be at most {limits.max_side} px"
        )
    try:
        if scaled_down:
            image.draft(None, (1, 1))  # the smallest scale the decoder offers (a no-op but for JPEG)
        stream.read_past_end = False  # a format's header parser may probe past the end; pixels may not
        image.load()
        if stream.read_past_end:
            raise InvalidImage(f"'{field}' could not be decoded (truncated: the data ends before the image)")
        return ImageOps.exif_transpose(image).convert("RGB")
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"'{field}' is too large: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(f"'{field}' could not be decoded (truncated or corrupt): {exc}") from None


def estimated_decode_seconds(data: bytes) -> float:
    """How long `decode_image` is expected to take on one core, from the header alone (~15 us); infinite
    beyond `CHEAP_DECODE_MAX_BYTES`. A header that does not parse is estimated 0: decoding refuses it as
    quickly."""
    if len(data) > CHEAP_DECODE_MAX_BYTES:
        return math.inf
    try:
        with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as image:
            per_pixel = DECODE_SECONDS_PER_PIXEL[image.format or ""]
            if image.format == "JPEG" and image.info.get("progressive"):
                per_pixel = PROGRESSIVE_JPEG_SECONDS_PER_PIXEL
            return image.width * image.height * per_pixel
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, ValueError, SyntaxError, KeyError):
        return 0.0


def encode_image(image: Image.Image, output_format: str = "jpeg", jpeg_quality: int = 95) -> EncodedImage:
    """Encode an RGB image as JPEG or PNG."""
    pil_format = OUTPUT_FORMATS.get(output_format.lower())
    if pil_format is None:
        raise InvalidInput(f"output_format must be one of {sorted(OUTPUT_FORMATS)}, got {output_format!r}")
    if not 1 <= jpeg_quality <= 100:
        raise InvalidInput(f"jpeg_quality must be between 1 and 100, got {jpeg_quality}")
    buffer = io.BytesIO()
    if pil_format == "JPEG":
        image.save(buffer, format="JPEG", quality=jpeg_quality)
    else:
        image.save(buffer, format="PNG")
    return EncodedImage(buffer.getvalue(), output_format.lower())
