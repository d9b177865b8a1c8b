"""Deterministic sample pictures for the tests, the benchmarks' payloads and the SDKs' conformance images."""

from __future__ import annotations

import io
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image


def sample_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A deterministic PIL picture with coloured shapes (different seeds give different pictures)."""
    from PIL import Image, ImageDraw  # noqa: F811 - the run-time import (pillow is not needed to import this)

    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        w, h = rng.randrange(1, max(2, size[0] // 2)), rng.randrange(1, max(2, size[1] // 2))
        colour = tuple(rng.randrange(256) for _ in range(3))
        box = [x, y, x + w, y + h]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return image


def sample_jpeg(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    """`sample_image` JPEG-encoded (~10 kB at 320x240)."""
    buffer = io.BytesIO()
    sample_image(seed, size).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
