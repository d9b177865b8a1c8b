"""KServe's, Knative's, KEDA's and Kubernetes' own code (tests/kserve) on everything the chart and manifests/
render: admitted, reconciled into what the chart README says KServe runs, pods admitted at the Pod Security
level each scenario claims; crafted bad copies refused by the same code; the chart's own refusals compared
with KServe's."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import crafted
from . import kserve_harness as kh
from .conftest import CHART, MANIFESTS, NAMESPACE, RELEASE, SCENARIOS, Helm, iter_docs, scenario

Obj = dict[str, Any]
HTTP_PORT, GRPC_PORT = 8080, 8081
#: kinds nothing in the harness knows: the Prometheus Operator's (monitors validated by structure in test_chart.py,
#: the PrometheusRule's rules by promtool in test_alerts.py)
UNCHECKED_KINDS = {"PodMonitor.monitoring.coreos.com", "ServiceMonitor.monitoring.coreos.com",
                   "PrometheusRule.monitoring.coreos.com"}
POD_SECURITY_CLAIM = re.compile(r"^# Pod Security: (\w+)", re.MULTILINE)


def scenario_values(values: str) -> Obj:
    return yaml.safe_load(Path(scenario(values)).read_text()) or {}


def pod_security_level(values: str) -> str:
    """The Pod Security level a scenario's namespace enforces: its `# Pod Security: <level>` line, else
    "restricted"."""
    claim = POD_SECURITY_CLAIM.search(Path(scenario(values)).read_text())
    return claim.group(1) if claim else "restricted"


def canary_models(values: str) -> list[str]:
    return [key for key, model in scenario_values(values).get("models", {}).items()
            if (model.get("canary") or {}).get("enabled")]


def cluster_for(values: str) -> kh.Cluster:
    gateway = scenario_values(values).get("kserve", {}).get("gatewayApi", {}).get("enabled", False)
    return kh.Cluster(namespace=NAMESPACE, pod_security=pod_security_level(values), gateway_api=gateway)


def admit_scenario(helm: Helm, values: str, sets: tuple[str, ...] = ()) -> kh.Report:
    """A scenario as a cluster would meet it: a canary is an upgrade of the release without it."""
    previous = helm.render(scenario(values), sets=(*sets, *(f"models.{m}.canary.enabled=false"
                                                          for m in canary_models(values))))
    return kh.admit(helm.render(scenario(values), sets=sets), cluster_for(values),
                    previous=previous if canary_models(values) else ())


@pytest.fixture(scope="module")
def reports(helm4: Helm) -> dict[str, kh.Report]:
    return {values: admit_scenario(helm4, values) for values in SCENARIOS}


def conditions(isvc_report: Obj) -> dict[str, str]:
    return {c["type"]: c["status"] for c in isvc_report["status"]["conditions"]}


def by_name(objects: list[Obj]) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects}


def server_container(pod_spec: Obj) -> Obj:
    (container,) = [c for c in pod_spec["containers"] if c["name"] == "kserve-container"]
    return container


# --------------------------------------------------------------------------------------------
# everything we ship is admitted and runs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", SCENARIOS)
@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_kserve_admits_and_runs_every_scenario(helms: dict[str, Helm], helm_name: str, values: str) -> None:
    report = admit_scenario(helms[helm_name], values)
    assert report.refusals() == []
    assert set(report.raw["unchecked"]) <= UNCHECKED_KINDS
    mode = scenario_values(values).get("mode", "kserve")
    assert bool(report.isvcs) == (mode == "kserve")
    for isvc in report.isvcs:
        assert isvc["operation"] == ("UPDATE" if canary_models(values) else "CREATE")
        assert conditions(isvc)["Ready"] == "True", isvc["status"]
    # every pod the scenario starts was evaluated: KServe's workloads', or the chart's own Deployments'
    assert list(report.all_pods()) and all(p["podSecurity"]["level"] == pod_security_level(values)
                                           for p in report.all_pods())


MANIFEST_SETS = {
    "standard": ["standard"],
    "knative": ["knative"],
    "canary-standard": ["standard", "canary/standard.yaml"],
    "canary-knative": ["knative", "canary/knative.yaml"],
}


def manifest_docs(*parts: str) -> list[Obj]:
    paths = []
    for part in parts:
        path = MANIFESTS / part
        paths += sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return [d for _, d in iter_docs(paths)]


def readme_hardened_default(containers: list[Obj]) -> list[Obj]:
    """KServe's `default` ClusterStorageContainer with the securityContext manifests/README.md tells a
    cluster admin to give it in a namespace enforcing "restricted"."""
    hardened = copy.deepcopy(containers)
    for csc in hardened:
        if csc["metadata"]["name"] == "default":
            csc["spec"]["container"]["securityContext"] = {"allowPrivilegeEscalation": False,
                                                           "capabilities": {"drop": ["ALL"]}}
    return hardened


@pytest.mark.parametrize("name", sorted(MANIFEST_SETS))
def test_kserve_admits_and_runs_every_manifest(name: str) -> None:
    base, *upgrade = MANIFEST_SETS[name]
    docs = manifest_docs(base)
    previous: list[Obj] = []
    if upgrade:  # the canary file replaces its model's stable InferenceService
        previous = docs
        canary = manifest_docs(*upgrade)
        replaced = {d["metadata"]["name"] for d in canary if d["kind"] == "InferenceService"}
        docs = [d for d in docs if not (d["kind"] == "InferenceService" and d["metadata"]["name"] in replaced)]
        docs += [d for d in canary if (d["kind"], d["metadata"]["name"]) not in
                 {(x["kind"], x["metadata"]["name"]) for x in docs}]
    cluster = kh.Cluster(namespace="models", gateway_api=name.endswith("standard"),
                         storage_containers=readme_hardened_default(kh.kserve_storage_containers()))
    report = kh.admit(docs, cluster, previous=previous)
    assert report.refusals() == []
    assert len(report.isvcs) == 4
    assert all(conditions(i)["Ready"] == "True" for i in report.isvcs)
    if upgrade:
        assert {i["operation"] for i in report.isvcs if i["name"] in replaced} == {"UPDATE"}


# --------------------------------------------------------------------------------------------
# what KServe runs is what the chart README says
# --------------------------------------------------------------------------------------------
def test_kserve_runs_the_server_container_as_rendered(reports: dict[str, kh.Report], helm4: Helm) -> None:
    """Standard mode: KServe's Deployment keeps our args, env, ports (8080 first, where it routes),
    probes, security context and volumes; its Service serves both ports."""
    checked = 0
    for values, report in reports.items():
        rendered = {d["metadata"]["name"]: d for d in helm4.render(scenario(values))
                    if d["kind"] == "InferenceService"}
        for isvc in report.isvcs:
            if isvc["defaulted"]["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] != "Standard":
                continue
            spec = rendered[isvc["name"]]["spec"]["predictor"]
            deployment = by_name(kh.written(isvc, "Deployment"))[f"{isvc['name']}-predictor"]
            pod = deployment["spec"]["template"]["spec"]
            ours, theirs = server_container(spec), server_container(pod)
            assert theirs["image"] == ours["image"] and theirs["args"] == ours["args"]
            assert [p["containerPort"] for p in theirs["ports"]] == [HTTP_PORT, GRPC_PORT]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert theirs[probe]["httpGet"] == ours[probe]["httpGet"], probe
                assert theirs[probe]["failureThreshold"] == ours[probe]["failureThreshold"], probe
            assert theirs["securityContext"] == ours["securityContext"]
            assert {e["name"]: e.get("value") for e in ours["env"]}.items() <= \
                {e["name"]: e.get("value") for e in theirs["env"]}.items()
            assert pod["securityContext"] == spec["securityContext"]
            assert pod["automountServiceAccountToken"] is False
            assert pod["terminationGracePeriodSeconds"] == spec["terminationGracePeriodSeconds"]
            service = by_name(kh.written(isvc, "Service", "v1"))[f"{isvc['name']}-predictor"]
            assert {p["targetPort"] for p in service["spec"]["ports"]} == {HTTP_PORT, GRPC_PORT}
            checked += 1
    assert checked >= 8


def test_kserve_creates_the_autoscaler_the_chart_readme_names(reports: dict[str, kh.Report]) -> None:
    """HPA (class hpa) with the model's bounds, KEDA ScaledObject (class keda), none (class external: the
    chart's own ScaledObject on the jobs backlog owns the Deployment)."""
    seen = set()
    for report in reports.values():
        for isvc in report.isvcs:
            annotations = isvc["defaulted"]["metadata"]["annotations"]
            if annotations["serving.kserve.io/deploymentMode"] != "Standard":
                continue
            cls = annotations["serving.kserve.io/autoscalerClass"]
            name = f"{isvc['name']}-predictor"
            hpas = by_name(kh.written(isvc, "HorizontalPodAutoscaler"))
            scaled = by_name(kh.written(isvc, "ScaledObject"))
            predictor = isvc["defaulted"]["spec"]["predictor"]
            if cls == "hpa":
                assert (hpas[name]["spec"]["minReplicas"], hpas[name]["spec"]["maxReplicas"]) == \
                    (stable_min_replicas(isvc), predictor["maxReplicas"]) and name not in scaled
            elif cls == "keda":
                assert scaled[name]["spec"]["maxReplicaCount"] == predictor["maxReplicas"] and name not in hpas
            else:
                assert cls == "external" and name not in hpas and name not in scaled
            seen.add(cls)
    assert seen == {"hpa", "keda", "external"}


def stable_min_replicas(isvc: Obj) -> int:
    """KServe lowers the stable minimum by the canaries' replicas (components/predictor.go), never below 1."""
    predictor = isvc["defaulted"]["spec"]["predictor"]
    canary = sum(math.ceil(predictor.get("minReplicas", 1) * c["trafficPercent"] / 100)
                 for c in isvc["defaulted"]["spec"].get("canary", []))
    return max(predictor.get("minReplicas", 1) - canary, 1)


def test_standard_canary_as_kserve_runs_it(reports: dict[str, kh.Report]) -> None:
    (isvc,) = reports["canary-standard-values.yaml"].isvcs
    name = isvc["name"]
    deployments = by_name(kh.written(isvc, "Deployment"))
    canary = deployments[f"{name}-canary-predictor"]["spec"]["template"]
    stable = deployments[f"{name}-predictor"]["spec"]["template"]
    assert server_container(canary["spec"])["image"].endswith(":0.2.0")
    assert server_container(stable["spec"])["image"].endswith(":0.1.0")
    assert (canary["metadata"]["labels"]["vision-predictors.io/track"],
            stable["metadata"]["labels"]["vision-predictors.io/track"]) == ("canary", "stable")
    # the canary: fixed at ceil(2 x 10 %) = 1 (KServe's HPA pinned at min = max); the stable minimum
    # lowered by that many as soon as the canary exists (not only once it is Ready)
    hpas = by_name(kh.written(isvc, "HorizontalPodAutoscaler"))
    assert (hpas[f"{name}-canary-predictor"]["spec"]["minReplicas"],
            hpas[f"{name}-canary-predictor"]["spec"]["maxReplicas"]) == (1, 1)
    assert hpas[f"{name}-predictor"]["spec"]["minReplicas"] == 2 - 1
    assert {s["metadata"]["name"] for s in kh.written(isvc, "Service", "v1")} == {f"{name}-predictor",
                                                                            f"{name}-canary-predictor"}
    # KServe 0.20's HTTPRoutes send everything to the stable Service: the weighted split is 0.21's
    routes = by_name(kh.written(isvc, "HTTPRoute"))
    assert set(routes) == {name, f"{name}-predictor"}
    backends = {b["name"] for r in routes.values() for rule in r["spec"]["rules"] for b in rule["backendRefs"]}
    assert backends == {f"{name}-predictor"}
    assert conditions(isvc)["CanaryPredictorReady"] == "True"
    assert isvc["status"]["canaryStatuses"][0]["trafficPercent"] == 10


def test_knative_canary_as_kserve_runs_it(reports: dict[str, kh.Report]) -> None:
    """Knative mode: KServe turns canaryTrafficPercent into the Knative Service's traffic: 10 % to the
    latest revision (the new spec), 90 % to the revision rolled out before, and Knative accepts it."""
    report = reports["canary-knative-values.yaml"]
    isvc = report.isvc(f"{RELEASE}-general-recognition")
    (ksvc,) = kh.written(isvc, "Service", "serving.knative.dev/v1")
    traffic = {(t.get("latestRevision", False), t["percent"]) for t in ksvc["spec"]["traffic"]}
    assert traffic == {(True, 10), (False, 90)}, ksvc["spec"]["traffic"]
    assert server_container(ksvc["spec"]["template"]["spec"])["image"].endswith(":0.2.0")
    assert [p["containerPort"] for p in server_container(ksvc["spec"]["template"]["spec"])["ports"]] == [HTTP_PORT]
    assert isvc["knativeServices"] and not any(k["errors"] for k in isvc["knativeServices"])


# --------------------------------------------------------------------------------------------
# crafted bad copies: KServe's own code refuses each, in its own words
# --------------------------------------------------------------------------------------------
def first_isvc(docs: list[Obj]) -> Obj:
    return next(d for d in docs if d["kind"] == "InferenceService")


def with_bad_copy(helm: Helm, bad: crafted.BadCopy) -> tuple[list[Obj], Obj]:
    """The scenario's documents with its first InferenceService replaced by the bad copy."""
    docs = helm.render(scenario(bad.scenario))
    original = first_isvc(docs)
    copy_ = copy.deepcopy(original)
    bad.mutate(copy_)
    return [copy_ if d is original else d for d in docs], copy_


def refusals_of(report: kh.Report, name: str) -> list[str]:
    return [line for line in report.refusals() if name in line]


@pytest.mark.parametrize("bad", crafted.BAD_COPIES, ids=[b.id for b in crafted.BAD_COPIES])
def test_kserve_refuses_each_bad_copy(helm4: Helm, bad: crafted.BadCopy) -> None:
    original = kh.admit(helm4.render(scenario(bad.scenario)), cluster_for(bad.scenario))
    assert original.refusals() == [], "the base must pass, or the refusal below proves nothing"
    docs, copy_ = with_bad_copy(helm4, bad)
    refused = refusals_of(kh.admit(docs, cluster_for(bad.scenario)), copy_["metadata"]["name"])
    assert any(bad.kserve_says in line for line in refused), refused


# --------------------------------------------------------------------------------------------
# the chart's refusals, against what KServe's code does with the object the chart refuses to render
# --------------------------------------------------------------------------------------------
GR = ("models.gr.predictor=general-recognition",)
GR_S3 = (*GR, "models.gr.weights.storageUri=s3://b/v1")
CANARY = ("kserve.gatewayApi.enabled=true", "models.gr.canary.enabled=true")
SCALES = ("models.gr.autoscaling.minReplicas=4", "models.gr.autoscaling.maxReplicas=6")


def _equivalent(sets: tuple[str, ...], *, canary_of: tuple[str, ...] = (),
                mutate: Callable[[Obj], None] = lambda _: None,
                drop: tuple[str, ...] = ()) -> Callable[[Helm], list[Obj]]:
    """The object the chart refuses, built from what it renders: `sets` rendered, `canary_of`'s
    spec.canary grafted on, `mutate` applied, kinds in `drop` left out."""
    def build(helm: Helm) -> list[Obj]:
        docs = [d for d in helm.render(sets=sets) if d["kind"] not in drop]
        isvc = first_isvc(docs)
        if canary_of:
            isvc["spec"]["canary"] = first_isvc(helm.render(sets=canary_of))["spec"]["canary"]
        mutate(isvc)
        return docs

    return build


@dataclass(frozen=True)
class ChartRefusal:
    id: str
    sets: tuple[str, ...]
    chart_says: str
    equivalent: Callable[[Helm], list[Obj]]
    #: a fragment of KServe's (or KEDA's, or Pod Security's) refusal; "" where their code admits it
    kserve_says: str
    #: where their code admits it: why the chart refuses anyway (checked by `check`, when given)
    why: str = ""
    check: Callable[[kh.Report], None] | None = None
    namespace: str = NAMESPACE
    gateway_api: bool = True


def _no_route_for_the_canary(report: kh.Report) -> None:
    (isvc,) = report.isvcs
    assert kh.written(isvc, "HTTPRoute") == [] and conditions(isvc)["Ready"] == "True"


def _canary_at_one_pod(report: kh.Report) -> None:
    (isvc,) = report.isvcs
    canary = by_name(kh.written(isvc, "Deployment"))[f"{isvc['name']}-canary-predictor"]
    assert canary["spec"].get("replicas") is None and not kh.written(isvc, "HorizontalPodAutoscaler")
    assert math.ceil(4 * 50 / 100) == 2, "what the share asks for, and the 1 pod Kubernetes defaults to"


def _canary_share(percent: int) -> Callable[[Obj], None]:
    return crafted.set_("spec:canary:0:trafficPercent", percent)


CHART_REFUSALS = [
    ChartRefusal("canary-without-gateway-api", (*GR_S3, "models.gr.canary.enabled=true"),
                 "set kserve.gatewayApi.enabled=true", _equivalent((*GR_S3, *CANARY)), "",
                 "KServe runs the canary, but without Gateway API it routes nothing to it", _no_route_for_the_canary,
                 gateway_api=False),
    ChartRefusal("canary-without-storage-uri", (*GR, "models.gr.weights.path=/m", *CANARY),
                 "needs stable weights with a storage URI",
                 _equivalent((*GR_S3, *CANARY), mutate=crafted.env("STORAGE_URI", None)),
                 "canary requires a stable predictor with a model"),
    ChartRefusal("keda-and-canary", (*GR_S3, *CANARY, "autoscaling.keda.enabled=true"),
                 "KEDA and a Standard-mode canary do not mix",
                 _equivalent((*GR_S3, "kserve.gatewayApi.enabled=true", "autoscaling.keda.enabled=true"),
                             canary_of=(*GR_S3, *CANARY)),
                 "no triggers defined in the ScaledObject"),
    ChartRefusal("jobs-scaling-and-canary",
                 (*GR_S3, *CANARY, *SCALES, "jobs.enabled=true", "jobs.redis.url=redis://r:6379",
                  "models.gr.canary.trafficPercent=50"),
                 "jobs scaling and a Standard-mode canary do not mix",
                 _equivalent((*GR_S3, *SCALES, "kserve.gatewayApi.enabled=true", "jobs.enabled=true",
                              "jobs.redis.url=redis://r:6379"), canary_of=(*GR_S3, *CANARY), mutate=_canary_share(50),
                             drop=("ScaledObject",)),
                 "", "with class external KServe gives the canary Deployment no replica count: 1 pod at any share",
                 _canary_at_one_pod),
    ChartRefusal("canary-label-too-long", ("fullnameOverride=" + "r" * 39, *GR_S3, *CANARY),
                 "the limit is 41", _equivalent(("fullnameOverride=" + "r" * 30, *GR_S3, *CANARY),
                                                mutate=crafted.set_("metadata:name", "r" * 39 + "-gr")),
                 "must be no more than 63 characters", namespace="m"),
    ChartRefusal("host-label-too-long", ("fullnameOverride=" + "r" * 39, *GR_S3, *CANARY),
                 "its first label", _equivalent(("fullnameOverride=" + "r" * 30, *GR_S3, *CANARY),
                                                mutate=crafted.set_("metadata:name", "r" * 39 + "-gr")),
                 "failed creating host name"),
    ChartRefusal("modelscope-canary-on-s3",
                 (*GR, "models.gr.weights.storageUri=modelscope://damo/x@v1", *CANARY,
                  "models.gr.canary.weights.storageUri=s3://b/v2"),
                 "inherits spec.predictor.storageContainerName",
                 _equivalent((*GR, "models.gr.weights.storageUri=modelscope://damo/x@v1", *CANARY,
                              "models.gr.canary.weights.storageUri=modelscope://damo/x@v2"),
                             mutate=crafted.env("STORAGE_URI", "s3://b/v2", where="canary")),
                 'ClusterStorageContainer "modelscope" does not support storageUri "s3://b/v2"'),
    ChartRefusal("modelscope-revision-colon", (*GR, "models.gr.weights.storageUri=modelscope://damo/x:v1"),
                 "reads modelscope://owner/model@revision",
                 _equivalent((*GR, "models.gr.weights.storageUri=modelscope://damo/x@v1"),
                             mutate=crafted.env("STORAGE_URI", "modelscope://damo/x:v1")),
                 "", "KServe passes the URI on; our downloader would ask the hub for a model named x:v1"),
    ChartRefusal("modelscope-revision-at-with-kserves-downloader",
                 (*GR, "models.gr.weights.storageUri=modelscope://damo/x@v1", "kserve.modelscopeStorageContainer="),
                 "reads modelscope://owner/model:revision",
                 _equivalent((*GR, "models.gr.weights.storageUri=modelscope://damo/x@v1"),
                             mutate=crafted.delete("spec:predictor:storageContainerName")),
                 "", "KServe 0.20 admits it and picks ours, the only container claiming modelscope://; from 0.21 "
                 "its `default` claims modelscope:// too and may win, reading owner/model:revision (chart README)"),
    ChartRefusal("knative-cpu-metric", (*GR_S3, "kserve.deploymentMode=Knative", "autoscaling.metric=cpu"),
                 "is not a Knative metric",
                 _equivalent((*GR_S3, "kserve.deploymentMode=Knative"),
                             mutate=crafted.set_("spec:predictor:scaleMetric", "cpu")),
                 "[cpu] is not a supported metric"),
    ChartRefusal("hpa-target-150", (*GR_S3, "autoscaling.target=150"), "accepts a utilization target of 1-100",
                 _equivalent(GR_S3, mutate=crafted.set_("spec:predictor:scaleTarget", 150)), "[1-100] integer"),
    ChartRefusal("gpu-pool-on-cpu-utilization", (*GR_S3, "models.gr.device=cuda"), "a GPU pool scales on queue depth",
                 _equivalent((*GR_S3, "models.gr.device=cuda", "autoscaling.maxReplicas=1"),
                             mutate=crafted.set_("spec:predictor:maxReplicas", 3)),
                 "", "KServe scales it on CPU utilization, which a GPU-bound server barely moves"),
    ChartRefusal("two-gpus", (*GR_S3, "models.gr.device=cuda", "models.gr.gpuCount=2"),
                 "the server drives one device per pod",
                 _equivalent((*GR_S3, "models.gr.device=cuda", "autoscaling.maxReplicas=1"),
                             mutate=crafted.set_("spec:predictor:containers:0:resources:limits:nvidia.com/gpu", 2)),
                 "", "KServe runs it; the server would use one of the two GPUs"),
]


@pytest.mark.parametrize("refusal", CHART_REFUSALS, ids=[r.id for r in CHART_REFUSALS])
def test_chart_refusals_against_kserve(helm4: Helm, refusal: ChartRefusal) -> None:
    """Where KServe refuses, the chart refuses first and says why; where KServe admits, the chart's reason
    is shown to hold on what KServe built."""
    args = ["template", RELEASE, str(CHART), "--namespace", refusal.namespace]
    proc = helm4.run(*args, *(a for s in refusal.sets for a in ("--set", s)), check=False)
    assert proc.returncode != 0 and refusal.chart_says in proc.stderr, proc.stderr
    docs = refusal.equivalent(helm4)
    for doc in docs:
        doc["metadata"].pop("namespace", None)
    report = kh.admit(docs, kh.Cluster(namespace=refusal.namespace, pod_security="baseline",
                                      gateway_api=refusal.gateway_api))
    if refusal.kserve_says:
        assert any(refusal.kserve_says in line for line in report.refusals()), report.refusals()
    else:
        assert report.refusals() == [] and refusal.why
        if refusal.check:
            refusal.check(report)


def test_refusals_are_exact(helm4: Helm) -> None:
    """Each of the chart's refusals stops only its own combination: one step back renders."""
    for sets in (
        (*GR_S3, *CANARY),  # canary with Gateway API, storage URI, HPA
        (*GR, "models.gr.weights.pvc.claimName=c", *CANARY),  # pvc:// is a storage URI too
        ("fullnameOverride=" + "r" * 36, *GR_S3, *CANARY),  # host label r x 36-gr-canary-predictor-models: 63
        ((*GR_S3, "models.gr.device=cuda", "models.gr.gpuCount=1", "autoscaling.keda.enabled=true")),
        ((*GR_S3, "models.gr.device=cuda", "autoscaling.maxReplicas=1")),
        ((*GR_S3, "kserve.deploymentMode=Knative")),  # metric defaults to concurrency
        ((*GR_S3, "extraEnv[0].name=PYTHONPATHX", "extraEnv[0].value=x")),
        ((*GR, "models.gr.weights.storageUri=modelscope://damo/x@v1")),  # ours, our syntax
        ((*GR, "models.gr.weights.storageUri=modelscope://damo/x:v1", "kserve.modelscopeStorageContainer=")),
    ):
        helm4.template_text(sets=sets)
    # the 41-character label limit of a canary binds in a namespace of at most 4 characters
    args = ["template", RELEASE, str(CHART), "--namespace", "m"]
    helm4.run(*args, *(a for s in ("fullnameOverride=" + "r" * 38, *GR_S3, *CANARY) for a in ("--set", s)))


def test_knative_scales_on_concurrency_by_default(helm4: Helm) -> None:
    docs = helm4.render(sets=(*GR_S3, "kserve.deploymentMode=Knative"))
    pred = first_isvc(docs)["spec"]["predictor"]
    assert (pred["scaleMetric"], pred["scaleTarget"]) == ("concurrency", 8)
    report = kh.admit(docs, kh.Cluster(pod_security="baseline"))
    assert report.refusals() == []
    (ksvc,) = kh.written(report.isvcs[0], "Service", "serving.knative.dev/v1")
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["autoscaling.knative.dev/metric"], annotations["autoscaling.knative.dev/target"]) == \
        ("concurrency", "8")
    pred = first_isvc(helm4.render(sets=GR_S3))["spec"]["predictor"]  # Standard keeps CPU utilization
    assert (pred["scaleMetric"], pred["scaleTarget"]) == ("cpu", 70)


@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_schema_refuses_pythonpath(helms: dict[str, Helm], helm_name: str) -> None:
    """KServe refuses PYTHONPATH on the stable predictor only (validateBlockedEnvVars skips spec.canary[]);
    the chart's schema refuses it in extraEnv, which every predictor and canary gets."""
    proc = helms[helm_name].lint(sets=(*GR_S3, "extraEnv[0].name=PYTHONPATH", "extraEnv[0].value=/x"))
    assert proc.returncode != 0 and "schema" in (proc.stdout + proc.stderr).lower()
    docs = helm4_render_with_canary_env(helms[helm_name])
    assert kh.admit(docs, kh.Cluster(pod_security="baseline", gateway_api=True)).refusals() == []


def helm4_render_with_canary_env(helm: Helm) -> list[Obj]:
    docs = helm.render(sets=(*GR_S3, *CANARY))
    crafted.env("PYTHONPATH", "/x", where="canary")(first_isvc(docs))
    return docs


def test_gateway_data_plane_may_reach_standard_pods(helm4: Helm) -> None:
    def namespaces(docs: list[Obj]) -> set[str]:
        (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"
                     and "helm.sh/hook" not in d["metadata"].get("annotations", {})]
        return {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                for rule in policy["spec"]["ingress"] for p in rule["from"] if "namespaceSelector" in p}

    assert "envoy-gateway-system" in namespaces(helm4.render(scenario("canary-standard-values.yaml")))
    assert "envoy-gateway-system" not in namespaces(helm4.render(scenario("cpu-values.yaml")))
    knative = helm4.render(scenario("canary-knative-values.yaml"), sets=("kserve.gatewayApi.enabled=true",))
    assert "envoy-gateway-system" not in namespaces(knative)  # Knative's activator/gateway path instead


def test_notes_name_the_canary_service_kserve_creates(helm4: Helm, reports: dict[str, kh.Report]) -> None:
    (isvc,) = reports["canary-standard-values.yaml"].isvcs
    notes = helm4.run("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                      "-f", scenario("canary-standard-values.yaml")).stdout.split("NOTES:", 1)[1]
    (canary_service,) = [s["metadata"]["name"] for s in kh.written(isvc, "Service", "v1")
                         if "canary" in s["metadata"]["name"]]
    assert f"http://{canary_service}.{NAMESPACE}.svc" in notes
