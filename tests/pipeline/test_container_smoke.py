"""ci/container-smoke.sh end to end: build the image (podman, local base), run it as the chart's pod spec
says, probes, v1/v2/tritonclient, SIGTERM drain under load. Marked `container` (make smoke): a fresh
build installs torch into the image and takes far longer than the `make test` budget allows."""

from __future__ import annotations

import subprocess

import pytest

from tests.pipeline.conftest import REPO


@pytest.mark.container
@pytest.mark.timeout(5400)
def test_container_smoke_script_passes() -> None:
    result = subprocess.run(["ci/container-smoke.sh"], cwd=REPO, capture_output=True, text=True, timeout=5300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    for evidence in (
        "runs as uid/gid 1001/1001, root filesystem read-only",
        "startup probe",
        "readiness probe succeeded",
        "tritonclient-grpc agree",
        "drain ok",
        "[container-smoke",
    ):
        assert evidence in output, output[-5000:]
    leftovers = subprocess.run(
        ["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True
    )
    assert "vision-predictors-smoke" not in leftovers.stdout
