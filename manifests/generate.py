#!/usr/bin/env python3
"""Regenerate the plain manifests in this directory from charts/vision-predictors.

The YAML under standard/, knative/ and canary/ is `helm template` output of the chart (so it has
exactly the chart's pod spec, probes, env and security settings), with Helm's bookkeeping labels
and the namespace removed so that `kubectl apply -n <namespace> -f ...` works anywhere.
tests/chart/test_manifests.py fails when these files drift from the chart: run

    python3 manifests/generate.py

after changing the chart. storage/ and README.md are written by hand.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHART = REPO / "charts" / "vision-predictors"
RELEASE = "vision-predictors"  # unit names: vision-predictors-<model>
NAMESPACE = "models"  # the walkthrough's (manifests/README.md); removed from the output

WEIGHTS = {
    "general-recognition": {"storageUri": "modelscope://damo/cv_resnest101_general_recognition"},
    "face-enhancement": {"storageUri": "modelscope://damo/cv_gpen_image-portrait-enhancement"},
    "visual-entailment": {"storageUri": "modelscope://damo/ofa_visual-entailment_snli-ve_large_en"},
    # no published ModelScope id in the server yet: weights mirrored to object storage
    "image-classification": {"storageUri": "s3://vision-models/image-classification/v1"},
}
HEADER = """\
# Generated from charts/vision-predictors by manifests/generate.py: edit the chart, then rerun it.
# {what}
# Apply: kubectl apply -n <namespace> -f {path}
"""


def _models(names: list[str], **extra: Any) -> dict[str, Any]:
    return {n: {"predictor": n, "weights": WEIGHTS[n], **extra} for n in names}


# name -> (description for the file header, chart values)
ALL = list(WEIGHTS)
SETS: dict[str, tuple[str, dict[str, Any]]] = {
    "standard": ("KServe Standard mode (Deployment + HPA per model).", {"models": _models(ALL)}),
    "knative": (
        "KServe Knative mode (revisions, concurrency scaling); Knative features: manifests/README.md.",
        {
            "kserve": {"deploymentMode": "Knative"},
            "autoscaling": {"metric": "concurrency", "target": 8},
            "models": _models(ALL),
        },
    ),
    "canary-standard": (
        "Standard-mode canary: spec.canary[] sends 10 % of general-recognition to 0.2.0 on the Gateway API\n"
        "# HTTPRoutes of KServe >= 0.21 (ingress.enableGatewayApi); Ingress and <isvc>-predictor stay 100 % stable.",
        {
            "kserve": {"gatewayApi": {"enabled": True, "dataPlaneNamespace": "envoy-gateway-system"}},
            "image": {"tag": "0.1.0"},
            "models": _models(
                ["general-recognition"],
                canary={"enabled": True, "trafficPercent": 10, "image": {"tag": "0.2.0"}},
            ),
        },
    ),
    "canary-knative": (
        "Knative canary, an upgrade of manifests/knative/: the new revision (image 0.2.0) gets\n"
        "# canaryTrafficPercent 10, the previously rolled-out one 90 % (on a first install: 100 % new).",
        {
            "kserve": {"deploymentMode": "Knative"},
            "autoscaling": {"metric": "concurrency", "target": 8},
            "image": {"tag": "0.1.0"},
            "models": _models(
                ["general-recognition"],
                canary={"enabled": True, "trafficPercent": 10, "image": {"tag": "0.2.0"}},
            ),
        },
    ),
}
DROP_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def helm_binary() -> str:
    out = subprocess.run(
        ["bash", str(REPO / "ci" / "install-helm.sh")], check=True, capture_output=True, text=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)["HELM4"]


def render(helm: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(values, f)
        f.flush()
        text = subprocess.run(
            [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--skip-tests", "-f", f.name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    docs = [d for d in yaml.safe_load_all(text) if d]
    for d in docs:
        meta = d["metadata"]
        meta.pop("namespace", None)
        for key in DROP_LABELS:
            meta.get("labels", {}).pop(key, None)
        # namespaceSelector.matchNames of monitors etc. are not rendered here (monitoring off)
    return docs


def dump(docs: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False, width=120) for d in docs)


def generate(target: Path) -> list[Path]:
    helm = helm_binary()
    written = []
    for name, (what, values) in SETS.items():
        docs = render(helm, values)
        common = [d for d in docs if d["kind"] in ("ServiceAccount", "NetworkPolicy")]
        per_unit: dict[str, list[dict[str, Any]]] = {}
        for d in docs:
            unit = d["metadata"].get("labels", {}).get("vision-predictors.io/unit")
            if unit:
                per_unit.setdefault(unit, []).append(d)
        if name.startswith("canary-"):
            files = {f"canary/{name.removeprefix('canary-')}.yaml": common + [d for u in per_unit.values() for d in u]}
        else:
            files = {f"{name}/00-common.yaml": common}
            files.update({f"{name}/{unit}.yaml": unit_docs for unit, unit_docs in sorted(per_unit.items())})
        for rel, file_docs in files.items():
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(HEADER.format(what=what, path=f"manifests/{rel}") + dump(file_docs))
            written.append(path)
    return written


if __name__ == "__main__":
    for p in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
