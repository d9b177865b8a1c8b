"""Write the images the vectors send (images/); run from the repository root with the project's venv:
`.venv/bin/python clients/conformance/make_images.py`. Deterministic: the same files every time."""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parents[1]))

from PIL import Image  # noqa: E402

from devtools.images import sample_image  # noqa: E402
from tests.support.faults import FORWARD_SLOW  # noqa: E402


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring 10 gigapixels: refused from its header (IMAGE_TOO_LARGE)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def padded_jpeg(jpeg: bytes, padding: int) -> bytes:
    """`jpeg` with `padding` bytes of comment segments (COM, ignored by decoders) after its start marker."""
    segments = b""
    while padding > 0:
        size = min(padding, 65533)
        segments += b"\xff\xfe" + struct.pack(">H", size + 2) + b"\0" * size
        padding -= size
    return jpeg[:2] + segments + jpeg[2:]


IMAGES = {
    "cat.jpg": lambda: encoded(sample_image(1, (320, 240)), "JPEG"),
    "photo-a.jpg": lambda: encoded(sample_image(2, (200, 160)), "JPEG"),
    "photo-b.jpg": lambda: encoded(sample_image(3, (200, 160)), "JPEG"),
    "photo-c.jpg": lambda: encoded(sample_image(4, (200, 160)), "JPEG"),
    # 16 px: one GPEN pass on a 2-core CPU costs seconds at this size already
    "face.png": lambda: encoded(sample_image(21, (16, 16)), "PNG"),
    "noface-a.png": lambda: encoded(sample_image(5, (30, 14)), "PNG"),
    "noface-b.png": lambda: encoded(sample_image(6, (30, 14)), "PNG"),
    # the suite's `picky-classifier` fails on bright images: a real 500 INTERNAL_ERROR
    "white.png": lambda: encoded(Image.new("RGB", (64, 64), (255, 255, 255)), "PNG"),
    # 65 px wide: the suite's faulty classifier's forward pass sleeps for it (tests/support/faults.py)
    "slow.png": lambda: encoded(sample_image(9, (FORWARD_SLOW, 48)), "PNG"),
    # 850 000 bytes: under the suite's 1 MiB body limit as raw bytes, over it base64-encoded (4/3 as large)
    "padded.jpg": lambda: padded_jpeg(encoded(sample_image(1, (320, 240)), "JPEG"), 850_000 - 4706),
    "broken.png": lambda: b"\x89PNG\r\n\x1a\n not an image",
    "bomb.png": bomb_png,
}

if __name__ == "__main__":
    for name, make in IMAGES.items():
        (ROOT / "images" / name).write_bytes(make())
        print(name)
