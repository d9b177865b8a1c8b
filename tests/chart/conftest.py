"""Fixtures for the Helm chart and manifests tests: real Helm 3 / Helm 4 binaries, rendering, schemas.

The binaries come from ci/install-helm.sh (idempotent; installs into <repo>/.tools on first use).
There is no cluster: the chart is proven by rendering, strict schema validation (kubernetes-validate
for built-in kinds, the KServe CRD for InferenceServices) and assertions on what KServe/Kubernetes
would read.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# The KServe CRD schemas: pinned by commit and content, looked up like every published document the tests use.
from tests.support.pinned import KSERVE_COMMIT, kserve_schema  # noqa: F401 - re-exported for the chart tests

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vision-predictors"
MANIFESTS = REPO / "manifests"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))


RELEASE = "vp"
NAMESPACE = "models"


def _install_tools() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(REPO / "ci" / "install-helm.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    tools = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert {"HELM3", "HELM4", "KUBECTL"} <= tools.keys(), out
    return tools


@pytest.fixture(scope="session")
def tools() -> dict[str, str]:
    return _install_tools()


class Helm:
    """Runs one Helm binary against the chart; caches renders (they are pure functions of the args)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self._cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def lint(self, *values: str, sets: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        args = ["lint", "--strict", str(CHART)]
        for v in values:
            args += ["-f", str(v)]
        for s in sets:
            args += ["--set", s]
        return self.run(*args, check=False)

    def template_text(
        self, *values: str, sets: tuple[str, ...] = (), check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        for v in values:
            args += ["-f", str(v)]
        for s in sets:
            args += ["--set", s]
        return self.run(*args, check=check)

    def template_error(self, *values: str, sets: tuple[str, ...] = ()) -> str:
        """stderr of a `helm template` that must fail (the chart refusing the values)."""
        proc = self.template_text(*values, sets=sets, check=False)
        assert proc.returncode != 0, f"rendered {values} {sets}"
        return proc.stderr

    def render(self, *values: str, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        key = (values, sets)
        if key not in self._cache:
            text = self.template_text(*values, sets=sets).stdout
            self._cache[key] = [d for d in yaml.safe_load_all(text) if d]
        return copy.deepcopy(self._cache[key])


@pytest.fixture(scope="session")
def helm4(tools: dict[str, str]) -> Helm:
    return Helm(tools["HELM4"])


@pytest.fixture(scope="session")
def helm3(tools: dict[str, str]) -> Helm:
    return Helm(tools["HELM3"])


@pytest.fixture(scope="session")
def helms(helm3: Helm, helm4: Helm) -> dict[str, Helm]:
    return {"helm3": helm3, "helm4": helm4}


def scenario(name: str) -> str:
    return str(CHART / "ci" / name)


def strict_schema(schema: Any) -> Any:
    """Copy of a CRD schema with additionalProperties: false wherever an object lists its properties
    (and does not preserve unknown fields): the CRDs themselves accept misspelled fields."""
    if isinstance(schema, dict):
        out = {k: strict_schema(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


@pytest.fixture(scope="session")
def isvc_validator() -> Any:
    import jsonschema

    path = kserve_schema("serving.kserve.io_inferenceservices.yaml")
    crd = yaml.load(
        path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )  # 2 MB: libyaml 7x faster
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema = strict_schema(version["schema"]["openAPIV3Schema"])
    # metadata is `type: object` in CRDs (the API server validates it): check the fields we use.
    schema["properties"]["metadata"] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": r"^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": 45},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "spec"})
    # (no check_schema: 12 s on this 2 MB upstream schema, and the CRD is not ours to fix)
    return jsonschema.validators.validator_for(schema)(schema)


def iter_docs(paths: list[Path]) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc
