"""Shared fixtures: an isolated ModelScope cache and a demo model repository generated once per run; the
run's report names the CPU it ran on (its header) and the bf16 path each precision test took (its end)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from devtools.images import sample_image  # noqa: F401 - shared with the benchmark's payloads

#: the user property (`record_property`) where a test says which bf16 path it ran
BF16_PATH = "bf16 path"


def pytest_report_header(config: pytest.Config) -> str:
    import platform

    from predictors.precision import read_cpu_bf16_support

    support = read_cpu_bf16_support()
    return (f"cpu: {cpu_model_name() or platform.machine()}; {support.facts}; "
            f"native bf16: {'yes' if support.native else 'no (bf16 tests check the fp32 fallback)'}")


def cpu_model_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.partition(":")[2].strip() for line in lines if line.startswith("model name")), "")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    paths = [(report.nodeid, value) for reports in terminalreporter.stats.values() for report in reports
             if isinstance(report, pytest.TestReport) and report.when == "call"
             for name, value in report.user_properties if name == BF16_PATH]
    if paths:
        terminalreporter.section("bf16 paths")
        for nodeid, path in sorted(paths):
            terminalreporter.write_line(f"{nodeid}: {path}")


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
    from predictors.models.demo import make_demo_repository

    root = tmp_path_factory.mktemp("demo-repo")
    make_demo_repository(root, ["general-recognition", "image-classification"])
    return root


def encode(image: Image.Image, fmt: str = "JPEG", **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()
