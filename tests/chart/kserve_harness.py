"""KServe's, Knative's, KEDA's and Kubernetes' own Go code on what the chart and manifests/ render, through
the harnesses in tests/kserve and tests/keda (built by ci/build-harness.sh from their pinned Go modules).

`admit` sends rendered documents to them and returns a `Report`: the API server's CRD defaulting and
schema validation; per InferenceService KServe's defaulting and validating webhooks (a canary is an update
of the stable object), the objects its reconciler wrote (Standard or Knative mode) once the cluster's other
controllers report them running, the API server's metadata validation of those objects, each pod of those
workloads after KServe's pod mutator with Pod Security admission's verdict, Knative Serving's validation
of the Knative Services KServe built; and KEDA's validating webhooks on every ScaledObject and
TriggerAuthentication, rendered or created by KServe, next to every other object of the namespace.

The cluster around the objects is what the chart README asks of an operator: KServe's own
`inferenceservice-config` as that release ships it (with `ingress.enableGatewayApi` where a scenario routes
through the Gateway API), Knative's shipped ConfigMaps with the `config-features` flags the README lists,
KServe's `default` ClusterStorageContainer plus ours from manifests/storage.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "tests" / "kserve"
KEDA_HARNESS_MODULE = REPO / "tests" / "keda"
OUR_STORAGE_CONTAINER = REPO / "manifests" / "storage" / "clusterstoragecontainer-modelscope.yaml"

KSERVE_MODULE = "github.com/kserve/kserve"
KNATIVE_MODULE = "knative.dev/serving"
KEDA_MODULE = "github.com/kedacore/keda/v2"
POD_SECURITY_MODULE = "k8s.io/pod-security-admission"

#: The config-features flags the chart README's "Knative mode prerequisites" asks an operator to enable.
KNATIVE_FEATURES = {
    f"kubernetes.podspec-{name}": "enabled"
    for name in ("securitycontext", "emptydir", "fieldref", "nodeselector", "tolerations", "affinity",
                 "topologyspreadconstraints")
}

Obj = dict[str, Any]


@functools.cache
def harness_binary(name: str = "kserve") -> Path:
    """A harness (kserve or keda), built once per source digest (minutes cold: the projects' dependency
    trees; then cached)."""
    out = subprocess.run([str(REPO / "ci" / "build-harness.sh"), name], capture_output=True, text=True,
                         timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"building the {name} harness failed:\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def run_harness(name: str, request: Obj | list[Obj]) -> Any:
    out = subprocess.run([str(harness_binary(name))], input=json.dumps(request), capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"the {name} harness failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout)


#: the modules whose code the harness runs (the versions the closing notes and docs name)
REPORTED_MODULES = (KSERVE_MODULE, KNATIVE_MODULE, KEDA_MODULE, POD_SECURITY_MODULE, "k8s.io/api",
                    "k8s.io/apiextensions-apiserver", "sigs.k8s.io/controller-runtime", "sigs.k8s.io/gateway-api")


@functools.cache
def go() -> str:
    """The Go toolchain the harnesses build with (ci/install-go.sh)."""
    out = subprocess.run([str(REPO / "ci" / "install-go.sh")], capture_output=True, text=True, check=True,
                         timeout=600)
    return out.stdout.strip().splitlines()[-1]


def go_list(module: Path, *args: str) -> str:
    return subprocess.run([go(), "list", "-m", *args], cwd=module, capture_output=True, text=True, check=True,
                          timeout=600, env={**os.environ, "GOTOOLCHAIN": "local"}).stdout


@functools.cache
def module_versions() -> dict[str, str]:
    """Each of REPORTED_MODULES and the version the harness builds with (after go.mod's replace directives)."""
    stdout = go_list(MODULE, "-f", "{{.Path}} {{.Version}} {{with .Replace}}{{.Version}}{{end}}", *REPORTED_MODULES)
    versions = {}
    for line in stdout.splitlines():
        path, version, *replaced = line.split()
        versions[path] = replaced[0] if replaced else version
    return versions


@functools.cache
def module_dir(path: str) -> Path:
    """Where Go's module cache holds a module of the KServe harness's build (its config files are read)."""
    harness_binary()  # downloads the modules
    return Path(go_list(MODULE, "-f", "{{.Dir}}", path).strip())


def kserve_storage_containers() -> list[Obj]:
    """KServe's own `default` ClusterStorageContainer as the pinned release ships it, and ours."""
    shipped = module_dir(KSERVE_MODULE) / "config" / "storagecontainers" / "default.yaml"
    docs = [d for d in yaml.safe_load_all(shipped.read_text()) if d]
    docs += [d for d in yaml.safe_load_all(OUR_STORAGE_CONTAINER.read_text()) if d]
    return docs


def kserve_crds() -> list[Path]:
    """The CRDs of the pinned KServe release whose kinds we render or read (config/crd/full)."""
    full = module_dir(KSERVE_MODULE) / "config" / "crd" / "full"
    return [full / "serving.kserve.io_inferenceservices.yaml",
            full / "clusterstoragecontainer" / "serving.kserve.io_clusterstoragecontainers.yaml"]


def _one_of_each(objects: list[Obj]) -> list[Obj]:
    """The first object of each kind and name: a namespace holds one (what a release renders wins over
    what an earlier release left)."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for obj in objects:
        key = (obj.get("kind", ""), obj.get("metadata", {}).get("name", ""))
        if key not in seen:
            seen.add(key)
            kept.append(obj)
    return kept


@dataclass
class Cluster:
    """The cluster the objects meet: namespace and its Pod Security level, and KServe's settings."""

    namespace: str = "models"
    pod_security: str = "restricted"
    gateway_api: bool = False
    storage_containers: list[Obj] = field(default_factory=kserve_storage_containers)
    knative_features: dict[str, str] = field(default_factory=lambda: dict(KNATIVE_FEATURES))


@dataclass
class Report:
    raw: Obj

    @property
    def isvcs(self) -> list[Obj]:
        return self.raw["inferenceServices"]

    def isvc(self, name: str) -> Obj:
        (found,) = [i for i in self.isvcs if i["name"] == name]
        return found

    @property
    def decoding_errors(self) -> list[Obj]:
        return self.raw["decodingErrors"]

    @property
    def rendered_pods(self) -> list[Obj]:
        """Pods of the workloads rendered directly (deployment mode), not created by KServe."""
        return self.raw["pods"]

    @property
    def scaled_objects(self) -> list[Obj]:
        """KEDA's verdict on each ScaledObject and TriggerAuthentication of the namespace."""
        return self.raw["keda"]

    def all_pods(self) -> Iterator[Obj]:
        yield from self.rendered_pods
        for isvc in self.isvcs:
            yield from isvc["pods"]

    def refusals(self) -> list[str]:
        """Every refusal in the report, one line each: empty when KServe, Knative, KEDA and Pod Security
        admit everything and KServe's reconciler succeeded."""
        lines = [f"decoding document {e['index']}: {e['error']}" for e in self.decoding_errors]
        for isvc in self.isvcs:
            name = isvc["name"]
            if not isvc["admitted"]:
                lines.append(f"{name}: KServe refused the {isvc['operation']}: {isvc['message']}")
            if isvc["reconcileError"]:
                lines.append(f"{name}: KServe's reconciler failed: {isvc['reconcileError']}")
            lines += [f"{name}: the API server would refuse what KServe creates: {m}" for m in isvc["invalid"]]
            lines += [f"{name}: Knative refused {k['name']}: {k['errors']}" for k in isvc["knativeServices"]
                      if k["errors"]]
        for pod in self.all_pods():
            if pod["mutationError"]:
                lines.append(f"{pod['owner']}: {pod['mutationError']}")
            verdict = pod["podSecurity"]
            if not verdict["allowed"]:
                lines.append(f"{pod['owner']}: Pod Security {verdict['level']!r} forbids "
                             + "; ".join(f"{v['reason']} ({v['detail']})" for v in verdict["forbidden"]))
        lines += [f"{s['kind']} {s['name']}: KEDA refused it: {s['message']}" for s in self.scaled_objects
                  if not s["admitted"]]
        return lines


def written(isvc_report: Obj, kind: str, api_version: str = "") -> list[Obj]:
    """The objects of one kind (and apiVersion, where two groups share a kind: core and Knative `Service`)
    KServe's reconciler wrote for an InferenceService."""
    return [o for o in isvc_report["objects"]
            if o.get("kind") == kind and api_version in ("", o.get("apiVersion"))]


def admit(documents: Iterable[Obj], cluster: Cluster | None = None, previous: Iterable[Obj] = (),
          existing: Iterable[Obj] = ()) -> Report:
    """Run the harnesses on rendered `documents`; `previous`: the InferenceServices as they stood before,
    when `documents` are an update of them; `existing`: other objects already in the namespace (e.g. the
    HPAs of a previous release), which KEDA's webhooks look at."""
    existing = list(existing)
    cluster = cluster or Cluster()
    kserve = module_dir(KSERVE_MODULE)
    request = {
        "kserveConfigMap": str(kserve / "config" / "configmap" / "inferenceservice.yaml"),
        "configOverrides": {"ingress": {"enableGatewayApi": True}} if cluster.gateway_api else {},
        "knativeConfigDir": str(module_dir(KNATIVE_MODULE) / "config" / "core" / "configmaps"),
        "knativeFeatures": cluster.knative_features,
        "namespace": cluster.namespace,
        "podSecurityLevel": cluster.pod_security,
        "documents": list(documents),
        "previous": [d for d in previous if d.get("kind") == "InferenceService"],
        "clusterObjects": cluster.storage_containers,
        "crds": [str(path) for path in kserve_crds()],
    }
    report = Report(run_harness("kserve", request))
    created = [o for isvc in report.isvcs for o in isvc["objects"]]
    report.raw["keda"] = run_harness("keda", {"namespace": cluster.namespace,
                                              "documents": _one_of_each([*request["documents"], *created, *existing])})
    return report


def pod_manifest(report: Report) -> list[Obj]:
    """Every Deployment KServe's reconciler wrote, its pod template replaced by the pod as admission leaves
    it (KServe's pod mutator applied): what the kubelet gets, for ci/kubelet.py to run."""
    manifest = []
    for isvc in report.isvcs:
        pods = {p["owner"]: p["pod"] for p in isvc["pods"]}
        for deployment in written(isvc, "Deployment"):
            pod = pods[f"Deployment/{deployment['metadata']['name']}"]
            deployment["spec"]["template"] = {"metadata": pod["metadata"], "spec": pod["spec"]}
            manifest.append(deployment)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.chart.kserve_harness --helm HELM --namespace NS <helm template args>`: the chart
    rendered with those arguments, through KServe's code, as YAML Deployments whose templates are the
    admitted pods (ci/container-smoke.sh runs one)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--helm", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--pod-security", default="restricted")
    parser.add_argument("template_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rendered = subprocess.run([args.helm, "template", *args.template_args, "--namespace", args.namespace],
                              capture_output=True, text=True, check=True).stdout
    report = admit([d for d in yaml.safe_load_all(rendered) if d],
                   Cluster(namespace=args.namespace, pod_security=args.pod_security))
    if report.refusals():
        print("\n".join(report.refusals()), file=sys.stderr)
        return 1
    yaml.safe_dump_all(pod_manifest(report), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
