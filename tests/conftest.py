"""Shared fixtures: an isolated ModelScope cache and a demo model repository generated once per run."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from bench.common import sample_image  # noqa: F401 - shared with the benchmark's payloads


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


def encode(image: Image.Image, fmt: str = "JPEG", **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()
