"""manifests/: generated from the chart without drift, strictly valid, canary and storage examples work."""

from __future__ import annotations

import importlib.util
import os
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import MANIFESTS, iter_docs

MODELS = {"general-recognition", "image-classification", "face-enhancement", "visual-entailment"}
GENERATED_DIRS = ("standard", "knative", "canary")


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("manifests_generate", MANIFESTS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def all_manifest_files() -> list[Path]:
    return sorted(MANIFESTS.rglob("*.yaml"))


def docs_in(*dirs: str) -> list[dict[str, Any]]:
    return [d for _, d in iter_docs(sorted(p for x in dirs for p in (MANIFESTS / x).glob("*.yaml")))]


def isvc_container(pred: dict[str, Any]) -> dict[str, Any]:
    assert pred["containers"][0]["name"] == "kserve-container"
    return pred["containers"][0]


def test_generated_manifests_match_the_chart(tools: dict[str, str], tmp_path: Path) -> None:
    written = _load_generator().generate(tmp_path)
    fresh = {p.relative_to(tmp_path) for p in written}
    committed = {p.relative_to(MANIFESTS) for d in GENERATED_DIRS for p in (MANIFESTS / d).glob("*.yaml")}
    assert fresh == committed, "run: python3 manifests/generate.py"
    stale = [
        str(rel) for rel in sorted(fresh) if (tmp_path / rel).read_text() != (MANIFESTS / rel).read_text()
    ]
    assert not stale, f"out of date, run: python3 manifests/generate.py ({stale})"


def test_builtin_objects_validate_strict() -> None:
    import kubernetes_validate

    kinds = set()
    for _path, doc in iter_docs(all_manifest_files()):
        if doc["apiVersion"].startswith("serving.kserve.io/"):
            continue
        for version in ("1.30.0", "1.37.0"):
            kubernetes_validate.validate(doc, version, strict=True)
        kinds.add(doc["kind"])
    assert {"ServiceAccount", "NetworkPolicy", "PodDisruptionBudget", "PersistentVolumeClaim", "Job"} <= kinds


def test_inferenceservices_validate_against_kserve_crd(isvc_validator: Any) -> None:
    count = 0
    for path, doc in iter_docs(all_manifest_files()):
        if doc["kind"] != "InferenceService":
            continue
        errors = list(isvc_validator.iter_errors(doc))
        assert not errors, f"{path}: " + "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
        count += 1
    assert count == 2 * len(MODELS) + 2


@pytest.mark.parametrize("mode", ["standard", "knative"])
def test_one_inferenceservice_per_model(mode: str) -> None:
    isvcs = [d for d in docs_in(mode) if d["kind"] == "InferenceService"]
    assert {i["spec"]["predictor"]["labels"]["vision-predictors.io/model"] for i in isvcs} == MODELS
    for isvc in isvcs:
        assert "namespace" not in isvc["metadata"]
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode.capitalize()
        c = isvc_container(isvc["spec"]["predictor"])
        model = isvc["spec"]["predictor"]["labels"]["vision-predictors.io/model"]
        assert c["args"] == ["serve", "--model-dir", f"{model}=/mnt/models"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["STORAGE_URI"].startswith(("modelscope://", "s3://"))
        assert c["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{model}/ready"
    # every pod the ISVCs create is covered by a PDB and the NetworkPolicy of the same directory
    pdbs = [d for d in docs_in(mode) if d["kind"] == "PodDisruptionBudget"]
    (np,) = [d for d in docs_in(mode) if d["kind"] == "NetworkPolicy"]
    for isvc in isvcs:
        labels = isvc["spec"]["predictor"]["labels"]
        assert (
            sum(
                all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items()) for p in pdbs
            )
            == 1
        )
        assert all(labels.get(k) == v for k, v in np["spec"]["podSelector"]["matchLabels"].items())
        sa = isvc["spec"]["predictor"]["serviceAccountName"]
        assert any(d["kind"] == "ServiceAccount" and d["metadata"]["name"] == sa for d in docs_in(mode))


def test_canary_examples() -> None:
    standard = next(
        d
        for d in docs_in("canary")
        if d["kind"] == "InferenceService"
        and d["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    )
    (canary,) = standard["spec"]["canary"]
    assert canary["trafficPercent"] == 10
    assert isvc_container(standard["spec"]["predictor"])["image"].endswith(":0.1.0")
    assert isvc_container(canary["predictor"])["image"].endswith(":0.2.0")
    knative = next(
        d
        for d in docs_in("canary")
        if d["kind"] == "InferenceService"
        and d["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    )
    assert knative["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert isvc_container(knative["spec"]["predictor"])["image"].endswith(":0.2.0")
    # the canary targets the same InferenceService the plain rollout created
    names = {d["metadata"]["name"] for d in docs_in("standard") if d["kind"] == "InferenceService"}
    assert standard["metadata"]["name"] in names and knative["metadata"]["name"] in names


def test_readme_walks_rollout_canary_promotion_rollback() -> None:
    text = (MANIFESTS / "README.md").read_text()
    for needle in (
        "kubectl apply -n models -f manifests/standard/",
        "manifests/canary/standard.yaml",
        "manifests/canary/knative.yaml",
        "### 3. Promotion",
        "### 4. Rollback",
        '"value":0',
        "canaryTrafficPercent",
        "clusterstoragecontainer-modelscope.yaml",
    ):
        assert needle in text, needle
    for rel in (line.split("`")[1] for line in text.splitlines() if line.startswith("| `")):
        if not rel.endswith("…`") and "<" not in rel and "…" not in rel:
            assert (MANIFESTS / rel).exists(), rel


def _fake_bin(tmp_path: Path, name: str) -> Path:
    """A stand-in executable that records its argv, one per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / name
    exe.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "{tmp_path}/{name}.args"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return bin_dir


@pytest.mark.parametrize(
    ("uri", "repo", "revision"),
    [
        (
            "modelscope://damo/cv_resnest101_general_recognition",
            "damo/cv_resnest101_general_recognition",
            "master",
        ),
        (
            "modelscope://damo/ofa_visual-entailment_snli-ve_large_en@v1.0.1",
            "damo/ofa_visual-entailment_snli-ve_large_en",
            "v1.0.1",
        ),
    ],
)
def test_modelscope_storage_container_calls_the_hub_cli(
    tmp_path: Path, uri: str, repo: str, revision: str
) -> None:
    (csc,) = [d for _, d in iter_docs([MANIFESTS / "storage" / "clusterstoragecontainer-modelscope.yaml"])]
    assert csc["kind"] == "ClusterStorageContainer" and csc["apiVersion"] == "serving.kserve.io/v1alpha1"
    container = csc["spec"]["container"]
    assert container["name"] == "storage-initializer"  # the only name KServe recognises
    assert csc["spec"]["supportedUriFormats"] == [{"prefix": "modelscope://"}]
    # KServe appends [storageUri, destination] to the container's command/args
    bin_dir = _fake_bin(tmp_path, "modelscope")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run([*container["command"], uri, "/mnt/models"], check=True, env=env, timeout=30)
    argv = (tmp_path / "modelscope.args").read_text().splitlines()
    assert argv == ["download", repo, "--revision", revision, "--local-dir", "/mnt/models"]


def test_weights_download_job_uses_the_server_cli() -> None:
    from predictors.cli import HUB_MODELS, build_parser

    job = next(d for _, d in iter_docs([MANIFESTS / "storage" / "pvc-weights.yaml"]) if d["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    lines = [shlex.split(line) for line in c["args"][0].splitlines() if line.strip()]
    assert lines
    for argv in lines:
        assert argv[0] == "predictors"
        args = build_parser().parse_args(argv[1:])
        assert args.command == "download" and args.name in HUB_MODELS
        assert str(args.directory).startswith("/mnt/models/")
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") == "vision-models" for v in pod["volumes"])
    assert (
        pod["securityContext"]["runAsNonRoot"] is True
        and c["securityContext"]["readOnlyRootFilesystem"] is True
    )
