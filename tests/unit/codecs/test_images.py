import math
import struct
import time
import zlib
from typing import Any

import pytest
from PIL import Image

from predictors.codecs.images import (
    CHEAP_DECODE_MAX_BYTES,
    DECODE_SECONDS_PER_PIXEL,
    PROGRESSIVE_JPEG_SECONDS_PER_PIXEL,
    ImageLimits,
    decode_image,
    encode_image,
    estimated_decode_seconds,
)
from predictors.errors import ImageTooLarge, InvalidImage, InvalidInput
from tests.conftest import encode, sample_image

LIMITS = ImageLimits(max_pixels=40_000_000)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height (a decompression bomb's header) with a stub IDAT."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_decodes_supported_formats_to_rgb(fmt: str) -> None:
    original = sample_image(1, (64, 48))
    decoded = decode_image(encode(original, fmt), LIMITS)
    assert decoded.mode == "RGB"
    assert decoded.size == (64, 48)


def test_grey_and_alpha_images_become_rgb() -> None:
    assert decode_image(encode(Image.new("L", (8, 8), 7), "PNG"), LIMITS).mode == "RGB"
    assert decode_image(encode(Image.new("RGBA", (8, 8), (1, 2, 3, 4)), "PNG"), LIMITS).getpixel((0, 0)) == (1, 2, 3)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(encode(image, "JPEG", exif=exif), LIMITS)
    assert decoded.size == (20, 40)


def test_bomb_header_is_rejected_before_decoding() -> None:
    with pytest.raises(ImageTooLarge) as error:
        decode_image(png_header_only(100_000, 100_000), LIMITS)
    assert error.value.code == "IMAGE_TOO_LARGE"


def test_pixel_limit_is_configurable() -> None:
    data = encode(sample_image(2, (100, 100)), "PNG")
    with pytest.raises(ImageTooLarge, match="10000 pixels"):
        decode_image(data, ImageLimits(max_pixels=9_999))
    assert decode_image(data, ImageLimits(max_pixels=10_000)).size == (100, 100)


def test_longest_side_limit() -> None:
    data = encode(sample_image(2, (120, 10)), "PNG")
    with pytest.raises(ImageTooLarge, match="longest side"):
        decode_image(data, ImageLimits(max_side=100))


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\xff\xd8\xff\xe0garbage"],
    ids=["empty", "text", "corrupt-jpeg"],
)
def test_undecodable_bytes(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        decode_image(data, LIMITS)


def test_truncated_jpeg() -> None:
    data = encode(sample_image(3, (200, 200)), "JPEG")
    with pytest.raises(InvalidImage, match="truncated"):
        decode_image(data[: len(data) // 2], LIMITS)


TRUNCATABLE = [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}), ("WEBP", {}),
               ("WEBP", {"lossless": True}), ("BMP", {})]


@pytest.fixture
def lenient_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    """PIL's process-wide flag as ModelScope's OFA preprocessor module leaves it after its import."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)


@pytest.mark.parametrize(("fmt", "options"), TRUNCATABLE, ids=lambda v: str(v))
@pytest.mark.parametrize("kept", [0.5, 0.9])
def test_truncated_images_are_refused_even_when_pillow_is_lenient(
    lenient_pillow: None, fmt: str, options: dict, kept: float
) -> None:
    data = encode(sample_image(3, (200, 160)), fmt, **options)
    with pytest.raises(InvalidImage):  # WebP's decoder refuses a cut file at open, the others at load
        decode_image(data[: int(len(data) * kept)], LIMITS)
    # the whole file still decodes, to the same pixels as with a strict Pillow
    assert decode_image(data, LIMITS).size == (200, 160)


def test_every_predictor_module_imported_leaves_decoding_strict() -> None:
    """The real trigger: importing the predictors' dependencies (OFA's preprocessor flips PIL's flag)."""
    from PIL import ImageFile

    from predictors.models.registry import PREDICTOR_CLASSES, predictor_class

    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        for name in PREDICTOR_CLASSES:
            predictor_class(name)
        import modelscope.preprocessors.ofa  # noqa: F401 - what visual-entailment's load_weights imports

        assert ImageFile.LOAD_TRUNCATED_IMAGES is True, "the dependency no longer flips the flag: update this test"
        for fmt in ("JPEG", "PNG"):
            data = encode(sample_image(3, (200, 160)), fmt)
            with pytest.raises(InvalidImage, match="truncated"):
                decode_image(data[: len(data) // 2], LIMITS)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def test_unsupported_format_is_refused() -> None:
    with pytest.raises(InvalidImage, match="supported"):
        decode_image(encode(sample_image(4, (16, 16)), "GIF"), LIMITS)


def test_encode_round_trip_and_validation() -> None:
    image = sample_image(5, (33, 17))
    png = encode_image(image, "png")
    assert png.format == "png" and decode_image(png.data, LIMITS).tobytes() == image.tobytes()
    assert decode_image(encode_image(image, "jpeg", 80).data, LIMITS).size == (33, 17)
    with pytest.raises(InvalidInput):
        encode_image(image, "gif")
    with pytest.raises(InvalidInput):
        encode_image(image, "jpeg", 0)


# ---- estimated_decode_seconds: what the submit check may decode on the event loop ---------------------


def _noise(width: int, height: int) -> Image.Image:
    return Image.effect_noise((width, height), 60).convert("RGB")


@pytest.mark.parametrize(("fmt", "save_args", "per_pixel"), [
    ("JPEG", {}, DECODE_SECONDS_PER_PIXEL["JPEG"]),
    ("JPEG", {"progressive": True}, PROGRESSIVE_JPEG_SECONDS_PER_PIXEL),
    ("PNG", {}, DECODE_SECONDS_PER_PIXEL["PNG"]),
    ("WEBP", {}, DECODE_SECONDS_PER_PIXEL["WEBP"]),
    ("BMP", {}, DECODE_SECONDS_PER_PIXEL["BMP"]),
])
def test_the_decode_estimate_is_pixels_times_the_formats_cost(fmt: str, save_args: dict, per_pixel: float) -> None:
    data = encode(_noise(120, 90), fmt, **save_args)
    assert estimated_decode_seconds(data) == pytest.approx(120 * 90 * per_pixel)


def test_undecodable_headers_are_estimated_free_and_large_bodies_expensive() -> None:
    # decoding refuses a header that does not parse at once: nothing to keep off the event loop
    assert estimated_decode_seconds(b"not an image at all") == 0.0
    assert estimated_decode_seconds(encode(_noise(8, 8), "GIF")) == 0.0  # unsupported format
    big = encode(_noise(300, 300), "BMP")  # few pixels, many bytes
    assert len(big) > CHEAP_DECODE_MAX_BYTES and estimated_decode_seconds(big) == math.inf


def test_the_estimate_is_the_right_order_of_magnitude_here() -> None:
    """The per-pixel costs were measured on the development machine; on this one, a 512 x 512 JPEG and PNG
    decode within 5x of their estimate either way (a units slip in the table fails here)."""
    for fmt in ("JPEG", "PNG"):
        data = encode(_noise(512, 512), fmt)
        best = min(_timed(decode_image, data, ImageLimits(max_pixels=10**7, max_side=0)) for _ in range(5))
        estimate = 512 * 512 * (DECODE_SECONDS_PER_PIXEL[fmt])
        assert estimate / 5 < best < estimate * 5, (fmt, best, estimate)


def _timed(function: Any, *args: Any) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started
