"""What may be passed as an image: a path, encoded bytes, a binary file object, or a PIL image."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: one image: a path, encoded bytes, a binary file object or a PIL image
ImageLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], "PILImage"]
#: a batch: one request, a list of results
ImageBatch = list[ImageLike] | tuple[ImageLike, ...]


def image_bytes(image: Any) -> bytes:
    """The encoded image (JPEG, PNG, WebP, BMP ...) to send; the server decodes and validates it."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        return Path(image).read_bytes()
    if hasattr(image, "read"):
        data = image.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("a file object given as an image must be opened in binary mode ('rb')")
        return bytes(data)
    if hasattr(image, "save") and hasattr(image, "mode") and hasattr(image, "size"):
        # A PIL image (duck-typed: Pillow stays optional). PNG is lossless, so the server sees these pixels.
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    raise TypeError(
        f"cannot send {type(image).__name__} as an image: give a path, bytes, a binary file object or a PIL image"
    )


def encode_images(image: ImageLike | ImageBatch) -> tuple[list[bytes], bool]:
    """The encoded images of a call, and whether it is a batch: a list or tuple of images is one batched
    request (its answer a list); anything else is one image."""
    if isinstance(image, (list, tuple)):
        return [image_bytes(one) for one in image], True
    return [image_bytes(image)], False
