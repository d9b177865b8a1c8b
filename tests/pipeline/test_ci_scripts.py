"""The pipeline's ci/ scripts that need no cluster or registry: deploy commands (dry run, rendered with the
real chart), and the pod-spec -> podman translation of the container smoke test."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline.conftest import REPO

sys.path.insert(0, str(REPO / "ci"))
import smoke_client  # noqa: E402

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


@pytest.fixture(scope="module")
def smoke_pod(helm4: str, tmp_path_factory: pytest.TempPathFactory) -> smoke_client.PodContainer:
    out = tmp_path_factory.mktemp("render") / "rendered.yaml"
    result = subprocess.run(
        [
            helm4,
            "template",
            "smoke",
            "charts/vision-predictors",
            "--namespace",
            "smoke",
            "-f",
            "tests/pipeline/smoke-values.yaml",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out.write_text(result.stdout)
    return smoke_client.PodContainer.load(out, "smoke-general-recognition", None)


def test_podman_arguments_follow_the_rendered_pod_spec(
    smoke_pod: smoke_client.PodContainer, tmp_path: Path
) -> None:
    (tmp_path / "pvc" / "general-recognition").mkdir(parents=True)
    args = smoke_pod.podman_run_args(
        "ctr", {"smoke-models": tmp_path / "pvc"}, tmp_path / "scratch", {8080: 18080, 8081: 18081}, "bridge"
    )
    joined = shlex.join(args)
    assert "--user 1001:1001" in joined and "--group-add 1001" in joined
    assert "--read-only --read-only-tmpfs=false" in joined
    assert "--cap-drop ALL" in joined and "--security-opt no-new-privileges" in joined
    assert f"--volume {tmp_path}/scratch/emptydir-tmp:/tmp:rw" in joined
    assert f"--volume {tmp_path}/pvc/general-recognition:/mnt/models:ro" in joined
    assert "--env PREDICTORS_SHUTDOWN_GRACE_SECONDS=30" in joined and re.search(r"--env HOME=/tmp\b", joined)
    assert "--memory 3221225472" in joined
    # downward-API resourceFieldRef limits.cpu (limit "2", divisor 1) as the kubelet resolves it
    assert "--env OMP_NUM_THREADS=2" in joined and "--env MKL_NUM_THREADS=2" in joined
    assert args[-4:] == [
        "localhost/vision-predictors:smoke",
        "serve",
        "--model-dir",
        "general-recognition=/mnt/models",
    ]
    probes = smoke_pod.probes()
    assert probes["startupProbe"].path == "/v2/models/general-recognition/ready"
    assert probes["livenessProbe"].path == "/v2/health/live"
    assert smoke_pod.grace_seconds == 40 and smoke_pod.pre_stop_sleep == 5


def test_resource_field_ref_rounds_up_like_the_kubelet() -> None:
    container = {"name": "c", "resources": {"limits": {"cpu": "1500m", "memory": "3Gi"}}}
    pod = smoke_client.PodContainer("d", "ns", {"containers": [container]}, container)
    assert pod.resource_field("X", {"resource": "limits.cpu", "divisor": "1"}) == "2"
    assert pod.resource_field("X", {"resource": "limits.memory", "divisor": "1Mi"}) == "3072"
    with pytest.raises(smoke_client.SmokeFailure):
        pod.resource_field("X", {"containerName": "other", "resource": "limits.cpu"})


def test_kubernetes_env_expansion() -> None:
    env = {"A": "1", "B": "x"}
    assert smoke_client.expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-x-$(C)-$(A)"
    assert smoke_client.quantity_bytes("3Gi") == 3 * 2**30 and smoke_client.quantity_cpus("500m") == 0.5


def test_gpu_smoke_stops_at_once_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: run ci/gpu-smoke.sh itself")
    result = subprocess.run(["ci/gpu-smoke.sh"], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 2, result.stderr
    assert "no usable CUDA GPU" in result.stderr and "runs on a GPU machine only (docs/gpu.md)" in result.stderr
    assert "runner checks" not in result.stderr  # nothing else was attempted
