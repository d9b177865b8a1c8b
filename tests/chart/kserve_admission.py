"""KServe's admission rules for the InferenceService fields this project renders, in Python.

A fast check that needs no Go build: each rule mirrors one piece of KServe's Go source at
KSERVE_VERSION (the release tests/kserve pins) and cites the file it mirrors. A rule takes one
InferenceService (a dict as rendered) and returns the messages KServe would give, [] when it would admit
the object. The real code decides: tests/chart/test_kserve_admission.py shows the mirror agreeing with
KServe's own code (the harness) on every rendered scenario, manifests/ and every crafted bad copy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

KSERVE_VERSION = "v0.20.0"
VALIDATION = "pkg/apis/serving/v1beta1/inference_service_validation.go"
CONSTANTS = "pkg/constants/constants.go"

Isvc = dict[str, Any]
Rule = Callable[[Isvc], list[str]]

# pkg/constants/constants.go: AutoscalerAllowedClassList, AutoscalerAllowedHPAMetricsList,
# AutoscalerAllowedKPAMetricsList; pkg/validation/env_policy.go: DefaultBlockedEnvVars.
AUTOSCALER_CLASSES = {"hpa", "external", "keda", "none"}
HPA_METRICS = {"cpu", "memory"}
KPA_METRICS = {"concurrency", "rps"}
BLOCKED_ENV = {"PYTHONPATH"}
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE_MAX = 63  # Kubernetes label values
FRAMEWORKS = (
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
    "model",
)


# ------------------------------------------------------------------------------------------ helpers
def annotations(isvc: Isvc) -> dict[str, str]:
    return isvc.get("metadata", {}).get("annotations") or {}


def deployment_mode(isvc: Isvc) -> str:
    """constants.ParseDeploymentMode: no annotation means Standard."""
    return annotations(isvc).get("serving.kserve.io/deploymentMode") or "Standard"


def canaries(isvc: Isvc) -> list[dict[str, Any]]:
    return isvc.get("spec", {}).get("canary") or []


def components(isvc: Isvc) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, predictor spec) for the stable predictor and every Standard-mode canary."""
    yield "predictor", isvc["spec"]["predictor"]
    for i, canary in enumerate(canaries(isvc)):
        yield f"canary[{i}]", canary.get("predictor") or {}


def kserve_container(predictor: dict[str, Any]) -> dict[str, Any] | None:
    """The container CustomPredictor reads (name kserve-container)."""
    return next((c for c in predictor.get("containers") or [] if c.get("name") == "kserve-container"), None)


def storage_uri(predictor: dict[str, Any]) -> str | None:
    """CustomPredictor.GetStorageUri (pkg/apis/serving/v1beta1/predictor_custom.go): the STORAGE_URI env
    value of kserve-container, or a framework predictor's storageUri."""
    container = kserve_container(predictor)
    if container is not None:
        for env in container.get("env") or []:
            if env.get("name") == "STORAGE_URI":
                return str(env.get("value", ""))
    for framework in FRAMEWORKS:
        if isinstance(predictor.get(framework), dict) and "storageUri" in predictor[framework]:
            return str(predictor[framework]["storageUri"])
    return None


def downloads(isvc: Isvc) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(label, effective predictor, storage URI) of every component whose pods get a storage-initializer
    init container: a storage URI other than pvc:// (PVCs are mounted instead). A canary's effective
    spec is the merge KServe builds (it inherits e.g. the stable's storageContainerName)."""
    stable = isvc["spec"]["predictor"]
    for where, pred in components(isvc):
        effective = pred if pred is stable else merged_canary(stable, pred)
        uri = storage_uri(effective)
        if uri and not uri.startswith("pvc://"):
            yield where, effective, uri


def raw_service_names(isvc: Isvc) -> list[str]:
    """Standard mode: PredictorServiceName of the stable predictor and each canary (<isvc>-predictor,
    <isvc>-<canary name>-predictor); none in Knative mode."""
    if deployment_mode(isvc) != "Standard":
        return []
    name = isvc["metadata"]["name"]
    return [f"{name}-{pred['name']}-predictor" if pred.get("name") else f"{name}-predictor"
            for _, pred in components(isvc)]


def merged_canary(stable: dict[str, Any], canary: dict[str, Any]) -> dict[str, Any]:
    """buildCanaryPredictor (pkg/controller/v1beta1/inferenceservice/components/predictor.go): mergo.Merge
    WithOverride of the canary over a copy of the stable predictor: maps merge key by key, non-empty
    scalars and slices of the canary replace the stable's, empty ones keep the stable's."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            out = dict(base)
            for key, value in over.items():
                out[key] = merge(base.get(key), value) if key in base else value
            return out
        return base if over in (None, "", [], {}, 0, False) else over

    return merge(stable, canary)


# ------------------------------------------------------------------------------------------ rules
def rule_isvc_name(isvc: Isvc) -> list[str]:
    """validateInferenceServiceName: the name matches IsvcNameFmt [a-z]([-a-z0-9]*[a-z0-9])?.

    Mirrors pkg/apis/serving/v1beta1/inference_service_validation.go @ KSERVE_VERSION."""
    name = isvc.get("metadata", {}).get("name", "")
    return [] if ISVC_NAME.match(name) else [f"the InferenceService {name!r} is invalid: name format"]


def rule_deployment_mode(isvc: Isvc) -> list[str]:
    """The deploymentMode annotation names a mode the controller knows (Standard or Knative here;
    RawDeployment/Serverless are legacy spellings it normalises). Canary validation and the autoscaler
    checks switch on this exact string.

    Mirrors pkg/constants/constants.go (DeploymentModeType, ParseDeploymentMode) @ KSERVE_VERSION."""
    mode = annotations(isvc).get("serving.kserve.io/deploymentMode", "Standard")
    return [] if mode in {"Standard", "Knative"} else [f"unknown deploymentMode {mode!r}"]


def rule_autoscaler_class(isvc: Isvc) -> list[str]:
    """validateInferenceServiceAutoscaler: serving.kserve.io/autoscalerClass is one of
    AutoscalerAllowedClassList (hpa, external, keda, none).

    Mirrors pkg/apis/serving/v1beta1/inference_service_validation.go and pkg/constants/constants.go
    @ KSERVE_VERSION."""
    value = annotations(isvc).get("serving.kserve.io/autoscalerClass")
    if value is None or value in AUTOSCALER_CLASSES:
        return []
    return [f"[{value}] is not a supported autoscaler class type"]


def rule_exactly_one_implementation(isvc: Isvc) -> list[str]:
    """validateExactlyOneImplementation: a predictor (and each canary predictor) has exactly one
    implementation: a framework spec or, for a custom predictor like ours, containers.

    Mirrors pkg/apis/serving/v1beta1/component.go and inference_service_validation.go
    (validateCanarySpecs) @ KSERVE_VERSION."""
    errors = []
    for where, pred in components(isvc):
        count = sum(1 for f in FRAMEWORKS if pred.get(f)) + (1 if pred.get("containers") else 0)
        if count != 1:
            errors.append(f"{where}: exactly one implementation expected, found {count}")
    return errors


def rule_replicas(isvc: Isvc) -> list[str]:
    """ComponentExtensionSpec.Validate / validateReplicas: minReplicas >= 0, maxReplicas >= 0 and
    minReplicas <= maxReplicas unless maxReplicas is 0 (unset).

    Mirrors pkg/apis/serving/v1beta1/component.go @ KSERVE_VERSION."""
    errors = []
    for where, pred in components(isvc):
        low, high = pred.get("minReplicas", 1), pred.get("maxReplicas", 0)
        if low < 0 or high < 0:
            errors.append(f"{where}: replicas must not be negative")
        elif high != 0 and low > high:
            errors.append(f"{where}: MinReplicas cannot be greater than MaxReplicas")
    return errors


def rule_protocol_env(isvc: Isvc) -> list[str]:
    """CustomPredictor.validateCustomProtocol: a PROTOCOL env on the first container is v1 or v2.

    Mirrors pkg/apis/serving/v1beta1/predictor_custom.go @ KSERVE_VERSION."""
    errors = []
    for where, pred in components(isvc):
        containers = pred.get("containers") or []
        for env in (containers[0].get("env") or []) if containers else []:
            if env.get("name") == "PROTOCOL" and env.get("value") not in {"v1", "v2"}:
                errors.append(f"{where}: invalid protocol {env.get('value')!r}")
    return errors


def rule_blocked_env(isvc: Isvc) -> list[str]:
    """validateBlockedEnvVars with validation.DefaultBlockedEnvVars (PYTHONPATH) on every container
    and init container of the stable predictor. KServe does not check spec.canary[] predictors (their
    containers reach the canary's pods all the same): the chart's schema refuses PYTHONPATH everywhere.

    Mirrors pkg/validation/env_policy.go and inference_service_validation.go @ KSERVE_VERSION."""
    pred = isvc["spec"]["predictor"]
    return [f"predictor: environment variable {env['name']} is not allowed"
            for container in (pred.get("containers") or []) + (pred.get("initContainers") or [])
            for env in container.get("env") or [] if env.get("name") in BLOCKED_ENV]


def rule_autoscaling_per_mode(isvc: Isvc) -> list[str]:
    """validateAutoScalingCompExtension on spec.predictor, by deployment mode and autoscaler class:
    Standard + hpa: scaleMetric cpu|memory (default cpu); scaleTarget 1-100 (the Go condition
      `metric == cpu && target < 1 || target > 100` refuses > 100 for memory as well); autoScaling
      metrics of type Resource only.
    Standard + keda: no scaleMetric; Resource cpu targets Utilization, memory AverageValue or
      Utilization; External/PodMetric need a query and a target value.
    Knative: no deploymentStrategy; scaleMetric concurrency|rps (default concurrency; cpu is refused
      with "[cpu] is not a supported metric"); an rps target >= 1. With the Knative annotation
      autoscaling.knative.dev/class: hpa.autoscaling.knative.dev the HPA rules apply instead.

    Mirrors pkg/apis/serving/v1beta1/inference_service_validation.go @ KSERVE_VERSION."""
    pred = isvc["spec"]["predictor"]
    errors = []
    if deployment_mode(isvc) == "Standard":
        autoscaler = annotations(isvc).get("serving.kserve.io/autoscalerClass")
        if autoscaler == "hpa":
            errors += _hpa_errors(pred)
        elif autoscaler == "keda":
            if "scaleMetric" in pred:
                errors.append("ScaleMetric is not supported for KEDA")
            for m in (pred.get("autoScaling") or {}).get("metrics") or []:
                errors += _keda_metric_errors(m)
    elif annotations(isvc).get("autoscaling.knative.dev/class") == "hpa.autoscaling.knative.dev":
        errors += _hpa_errors(pred)
    else:
        if "deploymentStrategy" in pred:
            errors.append("customizing deploymentStrategy is only supported for raw deployment mode")
        metric = pred.get("scaleMetric", "concurrency")
        if metric not in KPA_METRICS:
            errors.append(f"[{metric}] is not a supported metric")
        if metric == "rps" and pred.get("scaleTarget") is not None and pred["scaleTarget"] < 1:
            errors.append("the target for rps should be greater than 1")
    return errors


def _hpa_errors(pred: dict[str, Any]) -> list[str]:
    """validateScalingHPACompExtension."""
    errors = []
    metric = pred.get("scaleMetric", "cpu")
    if metric not in HPA_METRICS:
        errors.append(f"[{metric}] is not a supported metric")
    target = pred.get("scaleTarget")
    if target is not None and ((metric == "cpu" and target < 1) or target > 100):
        errors.append("the target utilization percentage should be a [1-100] integer")
    if metric == "memory" and target is not None and target < 1:
        errors.append("the target memory should be greater than 1 MiB")
    for m in (pred.get("autoScaling") or {}).get("metrics") or []:
        if m.get("type") != "Resource":
            errors.append(f"invalid HPA metric source type with value [{m.get('type')}]")
        elif not m.get("resource"):
            errors.append("metricSpec.Resource is not set for resource metric source type")
    return errors


def _keda_metric_errors(metric: dict[str, Any]) -> list[str]:
    """validateScalingKedaCompExtension, one metric."""
    kind = metric.get("type")
    if kind == "Resource":
        resource = metric.get("resource")
        if not resource:
            return ["metricSpec.Resource is not set for resource metric source type"]
        target = resource.get("target") or {}
        if resource.get("name") == "cpu" and target.get("type") != "Utilization":
            return ["the cpu target value type should be Utilization"]
        if resource.get("name") == "memory" and target.get("type") not in {"AverageValue", "Utilization"}:
            return ["the memory target value type should be AverageValue or Utilization"]
        if resource.get("name") not in {"cpu", "memory"}:
            return [f"resource type {resource.get('name')} is not supported"]
        if target.get("type") == "Utilization" and not 1 <= (target.get("averageUtilization") or 0) <= 100:
            return ["the target utilization percentage should be a [1-100] integer"]
        return []
    if kind in {"External", "PodMetric"}:
        body = metric.get("external" if kind == "External" else "podmetric")
        if not body:
            return [f"metricSpec.{kind} is not set for {kind.lower()} metric source type"]
        if not (body.get("metric") or {}).get("query"):
            return ["the query should not be empty"]
        if (body.get("target") or {}).get("value") in (None, ""):
            return ["the target threshold value should not be empty"]
        return []
    return [f"unknown KEDA metric type with value [{kind}]"]


def rule_canary(isvc: Isvc) -> list[str]:
    """validateCanarySpecs: spec.canary[] only in Standard mode; the stable predictor needs a storage
    URI (or a model spec); each canary predictor has a unique `name` different from the stable's;
    trafficPercent 0-100 and their sum <= 100; no workerSpec; no maxReplicas, scaleTarget,
    scaleMetric or autoScaling (canaries run fixed replicas); minReplicas <= the stable's.

    Mirrors pkg/apis/serving/v1beta1/inference_service_validation.go @ KSERVE_VERSION."""
    entries = canaries(isvc)
    if not entries:
        return []
    if deployment_mode(isvc) != "Standard":
        return ["canary is only supported in Standard deployment mode"]
    stable = isvc["spec"]["predictor"]
    errors = []
    if storage_uri(stable) is None and not stable.get("model"):
        errors.append("canary requires a stable predictor with a model")
    names: set[str] = set()
    total = 0
    for i, entry in enumerate(entries):
        pred = entry.get("predictor") or {}
        name = pred.get("name", "")
        if not name:
            errors.append(f"canary[{i}] predictor.name is required")
        elif name in names:
            errors.append(f"canary predictor.name {name!r} is duplicated")
        elif name == stable.get("name", ""):
            errors.append(f"canary predictor.name {name!r} conflicts with stable predictor name")
        names.add(name)
        percent = entry.get("trafficPercent", 0)
        if not 0 <= percent <= 100:
            errors.append(f"canary {name!r} trafficPercent must be between 0 and 100")
        total += percent
        if pred.get("workerSpec"):
            errors.append(f"canary {name!r} must not set workerSpec")
        if pred.get("maxReplicas", 0) > 0:
            errors.append(f"canary {name!r} must not set maxReplicas (canary uses fixed replicas)")
        for field in ("scaleTarget", "scaleMetric", "autoScaling"):
            if pred.get(field) is not None:
                errors.append(f"canary {name!r} must not set {field} (canary uses fixed replicas)")
        if pred.get("minReplicas") is not None and pred["minReplicas"] > stable.get("minReplicas", 1):
            errors.append(f"canary {name!r} minReplicas must not exceed stable predictor minReplicas")
    if total > 100:
        errors.append(f"sum of canary trafficPercent values ({total}) must be <= 100")
    return errors


def rule_raw_service_label_length(isvc: Isvc) -> list[str]:
    """Standard mode labels each predictor Deployment's pods and Service selector
    `app: isvc.<PredictorServiceName(isvc, predictor.name)>`, i.e. isvc.<isvc>-predictor and
    isvc.<isvc>-<canary name>-predictor; a label value holds at most 63 characters, or the
    Deployment is refused by the API server after admission.

    Mirrors pkg/constants/constants.go (GetRawServiceLabel, PredictorServiceName) and
    pkg/controller/v1beta1/inferenceservice/components/predictor.go (reconcileCanaryDeployments)
    @ KSERVE_VERSION."""
    return [f"label app: {label} is {len(label)} characters (> {LABEL_VALUE_MAX})"
            for label in (f"isvc.{service}" for service in raw_service_names(isvc)) if len(label) > LABEL_VALUE_MAX]


def rule_host_name(isvc: Isvc) -> list[str]:
    """Standard mode: the raw reconciler names each predictor's host with the ingress domainTemplate
    (default `{{ .Name }}-{{ .Namespace }}`), <isvc>-predictor-<namespace> and, per canary,
    <isvc>-<canary name>-predictor-<namespace>; a first label over 63 characters fails the reconcile
    ("failed creating host name") after the webhook admitted the object.

    Mirrors pkg/controller/v1beta1/inferenceservice/reconcilers/raw/raw_kube_reconciler.go
    (NewRawKubeReconciler), reconcilers/ingress/domain.go (GenerateDomainName) and
    config/configmap/inferenceservice.yaml @ KSERVE_VERSION."""
    namespace = isvc["metadata"].get("namespace") or "default"
    labels = [f"{service}-{namespace}" for service in raw_service_names(isvc)]
    return [f"host label {label} is {len(label)} characters (> {LABEL_VALUE_MAX})"
            for label in labels if len(label) > LABEL_VALUE_MAX]


def rule_storage_container(isvc: Isvc, supported: dict[str, list[str]]) -> list[str]:
    """Storage initializer selection: with spec.predictor.storageContainerName the named
    ClusterStorageContainer must support the URI ("does not support storageUri" otherwise, no
    fallback); without it KServe takes the first container of an unordered list whose
    supportedUriFormats match. For modelscope:// two containers match since KServe 0.21 (ours and
    the `default` one, with different revision syntaxes), so the name must be set. A canary inherits
    the stable's storageContainerName (merged spec). `supported` maps container names to URI prefixes.

    Mirrors pkg/webhook/admission/pod/storage_initializer_injector.go (GetStorageContainerSpec,
    GetStorageContainerSpecByName), config/storagecontainers/default.yaml and
    components/predictor.go (buildCanaryPredictor) @ KSERVE_VERSION."""
    errors = []
    for where, effective, uri in downloads(isvc):
        name = effective.get("storageContainerName")
        if name:
            prefixes = supported.get(name)
            if prefixes is None:
                errors.append(f"{where}: ClusterStorageContainer {name!r} not found")
            elif not uri.startswith(tuple(prefixes)):
                errors.append(f"{where}: ClusterStorageContainer {name!r} does not support storageUri {uri!r}")
        elif sum(uri.startswith(tuple(p)) for p in supported.values()) > 1:
            errors.append(f"{where}: several ClusterStorageContainers match {uri!r}; the choice is random")
    return errors


def rule_restricted_storage_initializer(isvc: Isvc, containers: dict[str, dict[str, Any]]) -> list[str]:
    """Pod Security "restricted" for the injected storage-initializer: KServe builds it without a
    securityContext and strategic-merges the chosen ClusterStorageContainer's container into it, so
    allowPrivilegeEscalation: false and capabilities.drop [ALL] must come from that container spec
    (runAsNonRoot and seccompProfile may come from the pod). `containers` maps ClusterStorageContainer
    names to their spec.container; URIs without storageContainerName resolve to `default`.

    Mirrors pkg/webhook/admission/pod/storage_initializer_injector.go, pkg/utils/storage.go
    (CreateInitContainerWithConfig) and pkg/utils/container_merge.go @ KSERVE_VERSION."""
    errors = []
    for where, effective, _ in downloads(isvc):
        name = effective.get("storageContainerName") or "default"
        sc = (containers.get(name) or {}).get("securityContext") or {}
        pod = effective.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{where}: storage-initializer ({name}) allows privilege escalation")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            errors.append(f"{where}: storage-initializer ({name}) does not drop ALL capabilities")
        if not sc.get("runAsNonRoot", pod.get("runAsNonRoot")):
            errors.append(f"{where}: storage-initializer ({name}) may run as root")
        seccomp = (sc.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            errors.append(f"{where}: storage-initializer ({name}) has no seccomp profile")
    return errors


# Rules that need only the InferenceService.
ISVC_RULES: list[Rule] = [
    rule_isvc_name,
    rule_deployment_mode,
    rule_autoscaler_class,
    rule_exactly_one_implementation,
    rule_replicas,
    rule_protocol_env,
    rule_blocked_env,
    rule_autoscaling_per_mode,
    rule_canary,
    rule_raw_service_label_length,
    rule_host_name,
]


def admission_errors(isvc: Isvc, storage_containers: dict[str, dict[str, Any]]) -> list[str]:
    """Every rule but the Pod Security one (that depends on the namespace's enforced level).
    `storage_containers`: ClusterStorageContainer name -> its spec."""
    supported = {
        name: [f["prefix"] for f in spec.get("supportedUriFormats", []) if "prefix" in f]
        + [_regex_prefix(f["regex"]) for f in spec.get("supportedUriFormats", []) if "regex" in f]
        for name, spec in storage_containers.items()
    }
    errors = [e for rule in ISVC_RULES for e in rule(isvc)]
    return errors + rule_storage_container(isvc, supported)


def _regex_prefix(regex: str) -> str:
    """Literal scheme of a supportedUriFormats regex ("https?://..." -> "http"), enough to tell
    which containers could match a URI."""
    return re.split(r"[^a-z:/]", regex, maxsplit=1)[0] or regex
