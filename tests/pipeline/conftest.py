"""Fixtures for the pipeline tests: gitlab-ci-local and Helm installed idempotently into .tools/."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "container: builds the image and runs it with podman (make smoke; ~20 min on a fresh machine)",
    )


def _tool_paths(script: str) -> dict[str, str]:
    result = subprocess.run(
        [str(REPO / "ci" / script)], cwd=REPO, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, f"ci/{script} failed:\n{result.stderr[-3000:]}"
    return dict(line.split("=", 1) for line in result.stdout.split() if "=" in line)


@pytest.fixture(scope="session")
def gitlab_ci_local() -> str:
    return _tool_paths("install-gitlab-ci-local.sh")["GITLAB_CI_LOCAL"]


@pytest.fixture(scope="session")
def helm4() -> str:
    return _tool_paths("install-helm.sh")["HELM4"]


def run_gcl(
    executable: str, *args: str, cwd: Path = REPO, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """gitlab-ci-local with its state kept under .tools/ (not in the work tree) and no colour codes."""
    env = {**os.environ, "FORCE_COLOR": "0", "NO_COLOR": "1"}
    return subprocess.run(
        [executable, "--state-dir", ".tools/gitlab-ci-local-state", "--no-color", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
