"""Fixtures for the Helm chart and manifests tests: real Helm 3 / Helm 4 binaries, rendering, schemas.

The binaries come from ci/install-helm.sh (idempotent; installs into <repo>/.tools on first use).
There is no cluster: the chart is proven by rendering, strict schema validation (kubernetes-validate
for built-in kinds, the KServe CRD for InferenceServices) and assertions on what KServe/Kubernetes
would read.
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vision-predictors"
MANIFESTS = REPO / "manifests"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))


#: The KServe CRD schemas the manifests are validated against: KServe's `config/crd/full/` at this commit
#: (master of 2026-08-21, after v0.20.0; the same files as ../shared/schemas/kserve), pinned by content.
KSERVE_COMMIT = "aaac4e294dae2c7b1aa1886447793f3aa1c30912"
KSERVE_SCHEMA_SHA256 = {
    "serving.kserve.io_inferenceservices.yaml": "57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff",
}
KSERVE_SCHEMA_URL = "https://raw.githubusercontent.com/kserve/kserve/{commit}/config/crd/full/{name}"


def kserve_schema(name: str) -> Path:
    """A KServe CRD schema file, never copied into the repository. Looked up in $VISION_SHARED_DIR, the
    ../shared beside the checkout (or beside a worktree one level deeper), then a per-user cache; else the
    pinned upstream file is downloaded into that cache. Every copy must match the pinned digest."""
    candidates = [Path(p) / "schemas" / "kserve" / name for p in [os.environ.get("VISION_SHARED_DIR", "")] if p]
    candidates += [base / "shared" / "schemas" / "kserve" / name for base in (REPO.parent, REPO.parent.parent)]
    cached = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vision-predictors" / \
        f"kserve-{KSERVE_COMMIT[:12]}" / name
    for path in [*candidates, cached]:
        if path.is_file() and _sha256(path.read_bytes()) == KSERVE_SCHEMA_SHA256[name]:
            return path
    url = os.environ.get("VISION_KSERVE_SCHEMA_URL", KSERVE_SCHEMA_URL).format(commit=KSERVE_COMMIT, name=name)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a pinned https URL
            data = response.read()
    except OSError as error:
        raise RuntimeError(
            f"KServe CRD schema {name} not found in {[str(c.parent) for c in candidates]} or {cached.parent}, "
            f"and downloading {url} failed ({error}): set VISION_SHARED_DIR to a directory holding "
            "schemas/kserve/ or put the file in the cache"
        ) from None
    if _sha256(data) != KSERVE_SCHEMA_SHA256[name]:
        raise RuntimeError(f"{url} does not match its pinned sha256; refusing it")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return cached


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
