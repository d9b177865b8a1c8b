"""Safe image decoding and encoding.

Decoding reads only the header before checking the pixel count, so a decompression bomb (a tiny file
that claims 100000x100000 pixels) is rejected before any pixel memory is allocated.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from predictors.errors import ImageTooLarge, InvalidImage, InvalidInput

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
OUTPUT_FORMATS = {"jpeg": "JPEG", "png": "PNG"}


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 40_000_000
    #: longest side; 0 means no limit beyond max_pixels
    max_side: int = 0


@dataclass(frozen=True)
class EncodedImage:
    """An encoded image result; the wire codecs send it as base64 (JSON) or raw bytes (binary, gRPC)."""

    data: bytes
    format: str  # "jpeg" | "png"


def decode_image(data: bytes, limits: ImageLimits, field: str = "image") -> Image.Image:
    """Decode JPEG/PNG/WebP/BMP bytes into an RGB image with EXIF orientation applied."""
    if not data:
        raise InvalidImage(f"'{field}' is empty")
    # Pillow warns (and beyond twice its own limit raises) about huge images before we can check them;
    # our own limit (below, from the header only) is the one that answers.
    try:
        image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
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
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"'{field}' is too large: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(f"'{field}' could not be decoded (truncated or corrupt): {exc}") from None


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
