"""Shared fixtures: an isolated ModelScope cache and a demo model repository generated once per run."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw


@pytest.fixture(scope="session", autouse=True)
def isolated_modelscope_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ModelScope writes to ~/.cache otherwise; keep every test run's files in its own temp dir."""
    cache = tmp_path_factory.mktemp("modelscope-cache")
    previous = os.environ.get("MODELSCOPE_CACHE")
    os.environ["MODELSCOPE_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("MODELSCOPE_CACHE", None)
    else:
        os.environ["MODELSCOPE_CACHE"] = previous


@pytest.fixture(scope="session")
def demo_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from predictors.demo import make_demo_repository

    root = tmp_path_factory.mktemp("demo-repo")
    make_demo_repository(root, ["general-recognition", "image-classification"])
    return root


def sample_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A deterministic picture with coloured shapes (different seeds give different pictures)."""
    import random

    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        w, h = rng.randrange(1, max(2, size[0] // 2)), rng.randrange(1, max(2, size[1] // 2))
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse([x, y, x + w, y + h], fill=colour)
        else:
            draw.rectangle([x, y, x + w, y + h], fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()
