"""Crafted bad copies of rendered InferenceServices: each one thing KServe (v0.20.0, the harness's pin)
refuses, with the words it refuses it in. test_kserve_code.py shows KServe's own code refusing each;
test_kserve_admission.py shows the Python mirror agreeing with that code on them and on everything we ship."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
Mutation = Callable[[Obj], None]

KEDA = "keda-values.yaml"
KNATIVE = "canary-knative-values.yaml"
CANARY = "canary-standard-values.yaml"


def set_(path: str, value: Any) -> Mutation:
    """Set `value` at a colon-separated path (list indices as numbers), creating mappings on the way."""
    def apply(isvc: Obj) -> None:
        *parents, last = path.split(":")
        node: Any = isvc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[last] = value

    return apply


def delete(path: str) -> Mutation:
    def apply(isvc: Obj) -> None:
        *parents, last = path.split(":")
        node: Any = isvc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return apply


def kserve_container(predictor: Obj) -> Obj:
    (container,) = [c for c in predictor["containers"] if c["name"] == "kserve-container"]
    return container


def env(name: str, value: str | None, where: str = "predictor") -> Mutation:
    """Set (or with None remove) an env var of the stable (or the first canary's) server container."""
    def apply(isvc: Obj) -> None:
        predictor = isvc["spec"]["predictor"] if where == "predictor" else isvc["spec"]["canary"][0]["predictor"]
        variables = kserve_container(predictor)["env"]
        variables[:] = [e for e in variables if e["name"] != name]
        if value is not None:
            variables.append({"name": name, "value": value})

    return apply


@dataclass(frozen=True)
class BadCopy:
    id: str
    scenario: str
    mutate: Mutation
    #: a fragment of what KServe's code (or the API server's CRD validation) says
    kserve_says: str


BAD_COPIES = [
    BadCopy("isvc-name", KEDA, set_("metadata:name", "Vision_Model"), "name must consist of lower case"),
    # an unknown mode is no raw deployment: the Standard-only deploymentStrategy the chart sets is refused
    BadCopy("deployment-mode", KEDA, set_("metadata:annotations:serving.kserve.io/deploymentMode", "Serverles"),
            "deploymentStrategy is only supported for raw deployment mode"),
    BadCopy("autoscaler-class", KEDA, set_("metadata:annotations:serving.kserve.io/autoscalerClass", "kpa"),
            "[kpa] is not a supported autoscaler class type"),
    BadCopy("two-implementations", KEDA, set_("spec:predictor:pytorch", {"storageUri": "s3://b/m"}),
            "exactly one of"),
    BadCopy("min-above-max", KEDA, set_("spec:predictor:minReplicas", 20), "cannot be greater than MaxReplicas"),
    BadCopy("protocol", KEDA, env("PROTOCOL", "v3"), "invalid protocol"),
    BadCopy("pythonpath", KEDA, env("PYTHONPATH", "/x"), "setting PYTHONPATH"),
    BadCopy("knative-cpu-metric", KNATIVE, set_("spec:predictor:scaleMetric", "cpu"),
            "[cpu] is not a supported metric"),
    BadCopy("knative-deployment-strategy", KNATIVE, set_("spec:predictor:deploymentStrategy", {"type": "Recreate"}),
            "deploymentStrategy is only supported for raw deployment mode"),
    BadCopy("standard-concurrency-metric", CANARY, set_("spec:predictor:scaleMetric", "concurrency"),
            "[concurrency] is not a supported metric"),
    BadCopy("hpa-target-150", CANARY, set_("spec:predictor:scaleTarget", 150), "[1-100] integer"),
    BadCopy("keda-scale-metric", KEDA, set_("spec:predictor:scaleMetric", "cpu"),
            "ScaleMetric is not supported for KEDA"),
    BadCopy("knative-hpa-class", KNATIVE,
            set_("metadata:annotations:autoscaling.knative.dev/class", "hpa.autoscaling.knative.dev"),
            "[concurrency] is not a supported metric"),
    BadCopy("keda-empty-query", KEDA, set_("spec:predictor:autoScaling:metrics:1:external:metric:query", ""),
            "the query should not be empty"),
    BadCopy("keda-cpu-average-value", KEDA,
            set_("spec:predictor:autoScaling:metrics:0:resource:target:type", "AverageValue"),
            "the cpu target value type should be Utilization"),
    BadCopy("canary-no-name", CANARY, delete("spec:canary:0:predictor:name"), "predictor.name is required"),
    BadCopy("canary-max-replicas", CANARY, set_("spec:canary:0:predictor:maxReplicas", 3), "must not set maxReplicas"),
    BadCopy("canary-scale-metric", CANARY, set_("spec:canary:0:predictor:scaleMetric", "cpu"),
            "must not set scaleMetric"),
    BadCopy("canary-scale-target", CANARY, set_("spec:canary:0:predictor:scaleTarget", 70),
            "must not set scaleTarget"),
    BadCopy("canary-autoscaling", CANARY, set_("spec:canary:0:predictor:autoScaling", {"metrics": []}),
            "must not set autoScaling"),
    BadCopy("canary-min-replicas", CANARY, set_("spec:canary:0:predictor:minReplicas", 9),
            "must not exceed stable predictor minReplicas"),
    # the CRD's schema (the API server, before any webhook) bounds the share
    BadCopy("canary-traffic-101", CANARY, set_("spec:canary:0:trafficPercent", 101), "less than or equal to 100"),
    BadCopy("canary-without-storage-uri", CANARY, env("STORAGE_URI", None),
            "canary requires a stable predictor with a model"),
    BadCopy("canary-in-knative-mode", CANARY, set_("metadata:annotations:serving.kserve.io/deploymentMode", "Knative"),
            "deploymentStrategy is only supported for raw deployment mode"),
    # KServe's default domainTemplate {{ .Name }}-{{ .Namespace }}: the host's first label over 63
    BadCopy("canary-host-too-long", CANARY, set_("metadata:name", "a" * 42), "failed creating host name"),
    BadCopy("host-too-long", KEDA, set_("metadata:name", "a" * 49), "failed creating host name"),
    # our ClusterStorageContainer named for a URI it does not download (a canary inherits the name)
    BadCopy("storage-container-mismatch", "gpu-values.yaml", env("STORAGE_URI", "s3://bucket/m"),
            "does not support storageUri"),
]
