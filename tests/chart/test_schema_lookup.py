"""Where the KServe CRD schema comes from on a machine without ../shared: a cache, else the pinned download (the
lookup every published document of the tests shares, `tests/support/pinned.py`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import tests.support.pinned as pinned
from tests.chart.conftest import KSERVE_COMMIT, kserve_schema

NAME = "serving.kserve.io_inferenceservices.yaml"


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(a verified copy found the usual way, the cache directory) with no shared copy visible any more."""
    found = kserve_schema(NAME)
    monkeypatch.setattr(pinned, "REPO", tmp_path / "a" / "checkout")
    monkeypatch.setenv("VISION_SHARED_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return found, tmp_path / "cache" / "vision-predictors" / f"kserve-{KSERVE_COMMIT[:12]}"


def test_a_cached_copy_is_used(empty_cache: tuple[Path, Path]) -> None:
    found, cache = empty_cache
    cache.mkdir(parents=True)
    shutil.copy(found, cache / NAME)
    assert kserve_schema(NAME) == cache / NAME


def test_a_copy_that_does_not_match_the_pin_is_refused(empty_cache: tuple[Path, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _, cache = empty_cache
    cache.mkdir(parents=True)
    (cache / NAME).write_text("tampered: true\n")
    monkeypatch.setenv("VISION_KSERVE_SCHEMA_URL", (tmp_path / "missing" / "{name}").as_uri())
    with pytest.raises(RuntimeError, match="VISION_SHARED_DIR"):
        kserve_schema(NAME)


def test_the_pinned_download_is_verified(empty_cache: tuple[Path, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The download path, served from a local file: a good copy lands in the cache, a bad one is refused."""
    found, cache = empty_cache
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    shutil.copy(found, upstream / NAME)
    monkeypatch.setenv("VISION_KSERVE_SCHEMA_URL", str(upstream.as_uri()) + "/{name}")
    assert kserve_schema(NAME) == cache / NAME and (cache / NAME).read_bytes() == found.read_bytes()
    (cache / NAME).unlink()
    (upstream / NAME).write_text("not the pinned file\n")
    with pytest.raises(RuntimeError, match="pinned sha256"):
        kserve_schema(NAME)


def test_the_oip_specs_are_found_the_same_way() -> None:
    """The conformance suite's documents come through the same lookup, each matching its pinned digest."""
    for name, digest in pinned.OIP_SPECS.sha256.items():
        path = pinned.oip_spec(name)
        assert path.name == name and pinned._sha256(path.read_bytes()) == digest
