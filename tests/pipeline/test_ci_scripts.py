"""The pipeline's ci/ scripts that need no cluster or registry: deploy commands (dry run, rendered with the
real chart), and the pod-spec -> podman translation of the container smoke test."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from tests.pipeline.conftest import REPO

CPU_VALUES = "charts/vision-predictors/ci/cpu-values.yaml"


def deploy(action: str, **env: str) -> list[list[str]]:
    base = {
        "DRY_RUN": "1",
        "RELEASE": "vp",
        "NAMESPACE": "vision-production",
        "IMAGE_REPOSITORY": "reg/vp",
        "IMAGE_TAG": "abc123",
        "IMAGE_DIGEST": "sha256:" + "1" * 64,
        "VALUES_FILES": CPU_VALUES,
        "MODELS": "general-recognition image-classification",
    }
    result = subprocess.run(
        ["ci/deploy.sh", action],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **base, **env},
    )
    assert result.returncode == 0, result.stderr
    return [shlex.split(line[2:]) for line in result.stderr.splitlines() if line.startswith("+ ")]


def render(helm: str, upgrade: list[str]) -> str:
    """`helm template` with the same chart, values and --set flags as a dry-run `helm upgrade`."""
    assert upgrade[1:3] == ["upgrade", "--install"]
    args, skip = [], {"--atomic", "--wait", "--create-namespace", "--reuse-values"}
    rest = upgrade[5:]
    i = 0
    while i < len(rest):
        if rest[i] in skip:
            i += 1
        elif rest[i] in ("--timeout", "--history-max"):
            i += 2
        else:
            args.append(rest[i])
            i += 1
    result = subprocess.run(
        [helm, "template", upgrade[3], upgrade[4], *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_staging_is_atomic_and_waits(helm4: str) -> None:
    (upgrade,) = deploy("staging")
    assert upgrade[:5] == ["helm", "upgrade", "--install", "vp", "charts/vision-predictors"]
    assert {"--atomic", "--wait"} <= set(upgrade)
    rendered = render(helm4, upgrade)
    assert "image: reg/vp:abc123@sha256:" + "1" * 64 in rendered


def test_cuda_models_get_their_variant_digests(helm4: str) -> None:
    cu13, cu12 = "sha256:" + "3" * 64, "sha256:" + "4" * 64
    for action in ("staging", "promote"):
        (upgrade,) = deploy(
            action,
            VALUES_FILES="charts/vision-predictors/ci/gpu-values.yaml",
            CU13_DIGEST=cu13,
            CU12_DIGEST=cu12,
            MODELS="face-enhancement-gpu general-recognition-gpu",
        )
        rendered = render(helm4, upgrade)
        assert f"image: reg/vp:abc123-cu13@{cu13}" in rendered, action
        assert f"image: reg/vp:abc123-cu12@{cu12}" in rendered, action
        if action == "staging":  # the CPU fallback pool: the plain tag and its digest
            assert "image: reg/vp:abc123@sha256:" + "1" * 64 in rendered


def test_canary_sends_ten_percent_to_the_new_image(helm4: str) -> None:
    # A Standard-mode canary needs Gateway API and stable weights with a storage URI (s3://, pvc://).
    (upgrade,) = deploy(
        "canary",
        CANARY_PERCENT="10",
        VALUES_FILES=f"{CPU_VALUES} tests/pipeline/gateway-api-values.yaml",
        MODELS="general-recognition visual-entailment",
    )
    assert "--reuse-values" in upgrade and "--atomic" in upgrade
    rendered = render(helm4, upgrade)  # the chart's schema accepts exactly these values
    assert rendered.count("trafficPercent: 10") == 2  # both models, KServe Standard spec.canary
    assert "reg/vp:abc123@sha256:" in rendered


def test_promote_moves_the_image_to_stable_and_drops_the_canary(helm4: str) -> None:
    (upgrade,) = deploy("promote")
    rendered = render(helm4, upgrade)
    assert "trafficPercent" not in rendered
    assert rendered.count("reg/vp:abc123@sha256:") == 2


def test_rollback_zeroes_canary_traffic_then_removes_it(helm4: str) -> None:
    zero, off = deploy("rollback")
    assert "models.general-recognition.canary.trafficPercent=0" in zero
    assert "models.general-recognition.canary.enabled=false" in off


def test_review_deploys_the_demo_image_with_baked_weights(helm4: str) -> None:
    (upgrade,) = deploy("review", VALUES_FILES="", NAMESPACE="vision-review-42", RELEASE="review-42")
    rendered = render(helm4, upgrade)
    assert "general-recognition=/opt/demo-models/general-recognition" in rendered
    assert "kind: Deployment" in rendered


def test_gpu_smoke_stops_at_once_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run ci/gpu-smoke.sh itself")
    result = subprocess.run(["ci/gpu-smoke.sh"], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 2, result.stderr
    assert "no usable CUDA GPU" in result.stderr and "runs on a GPU machine only (docs/gpu.md)" in result.stderr
    assert "runner checks" not in result.stderr  # nothing else was attempted


def test_smoke_client_runs_as_a_module_of_the_repository() -> None:
    """As the pipeline runs it (`python -m ci.smoke_client` from the repository root, in a venv without the
    project): it finds the kubelet module and the shared protocol client with nothing on PYTHONPATH."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "ci.smoke_client", "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "kubelet" in result.stdout
