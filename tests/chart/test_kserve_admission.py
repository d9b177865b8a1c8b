"""KServe's admission rules (tests/chart/kserve_admission.py) on every rendered scenario (Helm 3 and 4)
and every InferenceService in manifests/; each rule shown to refuse a crafted bad object; and the
chart's own refusals of combinations KServe would reject (helm template must fail, with the reason)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import kserve_admission as ka
from .conftest import CHART, MANIFESTS, NAMESPACE, RELEASE, SCENARIOS, Helm, iter_docs, scenario

# Scenarios whose namespace enforces Pod Security "restricted" (the init container counts too).
RESTRICTED_SCENARIOS = {"restricted-storage-values.yaml", "gpu-values.yaml"}
OUR_CSC = MANIFESTS / "storage" / "clusterstoragecontainer-modelscope.yaml"


def our_storage_container() -> dict[str, Any]:
    (csc,) = [d for _, d in iter_docs([OUR_CSC])]
    return csc


@pytest.fixture(scope="module")
def storage_containers() -> dict[str, dict[str, Any]]:
    """The ClusterStorageContainers of a cluster running KServe 0.21 plus manifests/storage."""
    ours = our_storage_container()
    return {"default": ka.DEFAULT_STORAGE_CONTAINER, ours["metadata"]["name"]: ours["spec"]}


def isvcs_of(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == "InferenceService"]


def assert_admitted(isvc: dict[str, Any], storage_containers: dict[str, Any], restricted: bool) -> None:
    errors = ka.admission_errors(isvc, storage_containers)
    if restricted:
        containers = {name: spec["container"] for name, spec in storage_containers.items()}
        errors += ka.rule_restricted_storage_initializer(isvc, containers)
    assert not errors, f"{isvc['metadata']['name']}: {errors}"


# --------------------------------------------------------------------------------------------
# every scenario, every manifest
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", SCENARIOS)
@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_every_scenario_passes_kserve_admission(
    helms: dict[str, Helm], helm_name: str, values: str, storage_containers: dict[str, Any]
) -> None:
    docs = helms[helm_name].render(scenario(values))
    mode = yaml.safe_load(Path(scenario(values)).read_text()).get("mode", "kserve")
    isvcs = isvcs_of(docs)
    assert bool(isvcs) == (mode == "kserve")
    for isvc in isvcs:
        assert_admitted(isvc, storage_containers, restricted=values in RESTRICTED_SCENARIOS)


def test_every_manifest_passes_kserve_admission(storage_containers: dict[str, Any]) -> None:
    isvcs = [d for _, d in iter_docs(sorted(MANIFESTS.rglob("*.yaml"))) if d["kind"] == "InferenceService"]
    assert len(isvcs) >= 10
    for isvc in isvcs:
        assert_admitted(isvc, storage_containers, restricted=False)
    # Our ClusterStorageContainer itself makes the init container admissible under "restricted".
    container = our_storage_container()["spec"]["container"]
    pod_like = {
        "metadata": {"name": "x"},
        "spec": {
            "predictor": {
                "storageContainerName": "modelscope",
                "containers": [
                    {"name": "kserve-container", "env": [{"name": "STORAGE_URI", "value": "modelscope://a/b"}]}
                ],
            }
        },
    }
    assert ka.rule_restricted_storage_initializer(pod_like, {"modelscope": container}) == []


def test_restricted_scenario_really_exercises_the_storage_initializer(helm4: Helm) -> None:
    """The restricted scenario downloads through our container (not only PVCs), so the rule is live."""
    (gr,) = [
        i
        for i in isvcs_of(helm4.render(scenario("restricted-storage-values.yaml")))
        if i["metadata"]["name"].endswith("general-recognition")
    ]
    assert ka.storage_uri(gr["spec"]["predictor"]).startswith("modelscope://")
    assert gr["spec"]["predictor"]["storageContainerName"] == our_storage_container()["metadata"]["name"]
    # the same model on s3:// would use KServe's `default` container: refused under "restricted"
    s3 = copy.deepcopy(gr)
    pred = s3["spec"]["predictor"]
    del pred["storageContainerName"]
    ka.kserve_container(pred)["env"][0]["value"] = "s3://bucket/model"
    containers = {"default": ka.DEFAULT_STORAGE_CONTAINER["container"]}
    assert ka.rule_restricted_storage_initializer(s3, containers)


# --------------------------------------------------------------------------------------------
# Standard canary over Gateway API, Knative canary as an upgrade
# --------------------------------------------------------------------------------------------
def test_standard_canary_is_what_kserve_admits_and_runs(helm4: Helm) -> None:
    (isvc,) = isvcs_of(helm4.render(scenario("canary-standard-values.yaml")))
    (entry,) = isvc["spec"]["canary"]
    pred = entry["predictor"]
    assert pred["name"] == "canary"
    assert not {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "autoScaling"} & pred.keys()
    assert ka.canary_replicas(isvc) == math.ceil(isvc["spec"]["predictor"]["minReplicas"] * 10 / 100) == 1
    label = f"isvc.{isvc['metadata']['name']}-canary-predictor"
    assert len(label) <= 63
    # the pods KServe builds from the merged spec carry the canary's image and track
    merged = ka.merged_canary(isvc["spec"]["predictor"], pred)
    assert ka.kserve_container(merged)["image"].endswith(":0.2.0")
    assert merged["labels"]["vision-predictors.io/track"] == "canary"
    # NOTES name KServe's canary Service (PredictorServiceName(isvc, "canary")) and say who sees the split
    notes = helm4.run(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        "-f",
        scenario("canary-standard-values.yaml"),
    ).stdout.split("NOTES:", 1)[1]
    assert f"http://{isvc['metadata']['name']}-canary-predictor.{NAMESPACE}.svc" in notes
    assert "only the Gateway API route (.status.url) splits 90/10" in notes


def test_knative_canary_is_an_upgrade(helm4: Helm, storage_containers: dict[str, Any]) -> None:
    """Knative splits between the last rolled-out revision and the new spec: the scenario is a second
    release (first install without canary, then the upgrade); both pass admission."""
    first = {
        i["metadata"]["name"]: i
        for i in isvcs_of(
            helm4.render(
                scenario("canary-knative-values.yaml"), sets=("models.general-recognition.canary.enabled=false",)
            )
        )
    }
    upgrade = {i["metadata"]["name"]: i for i in isvcs_of(helm4.render(scenario("canary-knative-values.yaml")))}
    name = f"{RELEASE}-general-recognition"
    for isvc in (*first.values(), *upgrade.values()):
        assert_admitted(isvc, storage_containers, restricted=False)
    old, new = first[name]["spec"]["predictor"], dict(upgrade[name]["spec"]["predictor"])
    assert "canaryTrafficPercent" not in old and new.pop("canaryTrafficPercent") == 10
    # the revisions differ in the image only: that is what the 90/10 split compares
    assert ka.kserve_container(old)["image"].endswith(":0.1.0")
    assert ka.kserve_container(new)["image"].endswith(":0.2.0")
    ka.kserve_container(new)["image"] = ka.kserve_container(old)["image"]
    assert new == old
    assert new.get("scaleMetric") == "concurrency"


# --------------------------------------------------------------------------------------------
# every rule refuses a crafted bad object (so none passes vacuously)
# --------------------------------------------------------------------------------------------
def _standard_canary(helm4: Helm) -> dict[str, Any]:
    (isvc,) = isvcs_of(helm4.render(scenario("canary-standard-values.yaml")))
    return isvc


def _knative(helm4: Helm) -> dict[str, Any]:
    return isvcs_of(helm4.render(scenario("canary-knative-values.yaml")))[0]


def _keda(helm4: Helm) -> dict[str, Any]:
    (isvc,) = isvcs_of(helm4.render(scenario("keda-values.yaml")))
    return isvc


def _set(path: str, value: Any) -> Any:
    def apply(isvc: dict[str, Any]) -> None:
        *parents, last = path.split(":")
        node: Any = isvc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[last] = value

    return apply


def _delete(path: str) -> Any:
    def apply(isvc: dict[str, Any]) -> None:
        *parents, last = path.split(":")
        node: Any = isvc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return apply


def _env(name: str, value: str, where: str = "predictor") -> Any:
    def apply(isvc: dict[str, Any]) -> None:
        pred = isvc["spec"]["predictor"] if where == "predictor" else isvc["spec"]["canary"][0]["predictor"]
        env = ka.kserve_container(pred)["env"]
        env[:] = [e for e in env if e["name"] != name] + [{"name": name, "value": value}]

    return apply


def _drop_env(name: str) -> Any:
    def apply(isvc: dict[str, Any]) -> None:
        env = ka.kserve_container(isvc["spec"]["predictor"])["env"]
        env[:] = [e for e in env if e["name"] != name]

    return apply


BAD_OBJECTS = [
    # (rule, base scenario, mutation, expected message fragment)
    (ka.rule_isvc_name, _keda, _set("metadata:name", "Vision_Model"), "name format"),
    (
        ka.rule_deployment_mode,
        _keda,
        _set("metadata:annotations:serving.kserve.io/deploymentMode", "Serverles"),
        "deploymentMode",
    ),
    (
        ka.rule_autoscaler_class,
        _keda,
        _set("metadata:annotations:serving.kserve.io/autoscalerClass", "kpa"),
        "autoscaler class",
    ),
    (
        ka.rule_exactly_one_implementation,
        _keda,
        _set("spec:predictor:pytorch", {"storageUri": "s3://b/m"}),
        "exactly one",
    ),
    (ka.rule_replicas, _keda, _set("spec:predictor:minReplicas", 20), "MinReplicas"),
    (ka.rule_protocol_env, _keda, _env("PROTOCOL", "v3"), "invalid protocol"),
    (ka.rule_blocked_env, _keda, _env("PYTHONPATH", "/x"), "PYTHONPATH"),
    (ka.rule_blocked_env, _standard_canary, _env("PYTHONPATH", "/x", where="canary"), "canary[0]"),
    (
        ka.rule_autoscaling_per_mode,
        _knative,
        _set("spec:predictor:scaleMetric", "cpu"),
        "[cpu] is not a supported metric",
    ),
    (
        ka.rule_autoscaling_per_mode,
        _knative,
        _set("spec:predictor:deploymentStrategy", {"type": "Recreate"}),
        "deploymentStrategy",
    ),
    (
        ka.rule_autoscaling_per_mode,
        _standard_canary,
        _set("spec:predictor:scaleMetric", "concurrency"),
        "[concurrency]",
    ),
    (ka.rule_autoscaling_per_mode, _standard_canary, _set("spec:predictor:scaleTarget", 150), "[1-100]"),
    (ka.rule_autoscaling_per_mode, _keda, _set("spec:predictor:scaleMetric", "cpu"), "not supported for KEDA"),
    (
        ka.rule_autoscaling_per_mode,
        _knative,
        _set("metadata:annotations:autoscaling.knative.dev/class", "hpa.autoscaling.knative.dev"),
        "[concurrency] is not a supported metric",
    ),
    (
        ka.rule_autoscaling_per_mode,
        _keda,
        _set("spec:predictor:autoScaling:metrics:1:external:metric:query", ""),
        "query",
    ),
    (
        ka.rule_autoscaling_per_mode,
        _keda,
        _set("spec:predictor:autoScaling:metrics:0:resource:target:type", "AverageValue"),
        "Utilization",
    ),
    (ka.rule_canary, _standard_canary, _delete("spec:canary:0:predictor:name"), "predictor.name is required"),
    (ka.rule_canary, _standard_canary, _set("spec:canary:0:predictor:maxReplicas", 3), "maxReplicas"),
    (ka.rule_canary, _standard_canary, _set("spec:canary:0:predictor:scaleMetric", "cpu"), "scaleMetric"),
    (ka.rule_canary, _standard_canary, _set("spec:canary:0:predictor:scaleTarget", 70), "scaleTarget"),
    (ka.rule_canary, _standard_canary, _set("spec:canary:0:predictor:autoScaling", {"metrics": []}), "autoScaling"),
    (ka.rule_canary, _standard_canary, _set("spec:canary:0:predictor:minReplicas", 9), "minReplicas"),
    (ka.rule_canary, _standard_canary, _set("spec:canary:0:trafficPercent", 101), "between 0 and 100"),
    (ka.rule_canary, _standard_canary, _drop_env("STORAGE_URI"), "stable predictor with a model"),
    (
        ka.rule_canary,
        _standard_canary,
        _set("metadata:annotations:serving.kserve.io/deploymentMode", "Knative"),
        "only supported in Standard",
    ),
    (ka.rule_raw_service_label_length, _standard_canary, _set("metadata:name", "a" * 42), "characters"),
    (ka.rule_raw_service_label_length, _keda, _set("metadata:name", "a" * 49), "characters"),
]


@pytest.mark.parametrize(
    ("rule", "base", "mutate", "message"),
    BAD_OBJECTS,
    ids=[f"{r.__name__}-{m}" for r, _, _, m in BAD_OBJECTS],
)
def test_each_rule_refuses_a_bad_object(helm4: Helm, rule: Any, base: Any, mutate: Any, message: str) -> None:
    isvc = base(helm4)
    assert rule(isvc) == [], "the base object must pass, or the failure below proves nothing"
    mutate(isvc)
    errors = rule(isvc)
    assert errors and any(message in e for e in errors), errors


def test_storage_container_rule_refuses_bad_objects(helm4: Helm, storage_containers: dict[str, Any]) -> None:
    supported = {
        name: [f["prefix"] for f in spec["supportedUriFormats"] if "prefix" in f]
        for name, spec in storage_containers.items()
    }
    isvc = isvcs_of(helm4.render(scenario("gpu-values.yaml")))[0]
    assert ka.rule_storage_container(isvc, supported) == []
    # modelscope:// without a name: two containers claim it, the choice is random
    random_pick = copy.deepcopy(isvc)
    del random_pick["spec"]["predictor"]["storageContainerName"]
    assert "random" in ka.rule_storage_container(random_pick, supported)[0]
    # our container named for an s3:// URI: KServe refuses instead of falling back
    wrong = copy.deepcopy(isvc)
    _env("STORAGE_URI", "s3://bucket/m")(wrong)
    assert "does not support" in ka.rule_storage_container(wrong, supported)[0]
    # a canary with s3:// weights inherits the stable's storageContainerName through the merge
    canary = copy.deepcopy(isvc)
    canary["spec"]["canary"] = [
        {
            "trafficPercent": 10,
            "predictor": {
                "name": "canary",
                "containers": [{"name": "kserve-container", "env": [{"name": "STORAGE_URI", "value": "s3://b/v2"}]}],
            },
        }
    ]
    assert any(e.startswith("canary[0]") for e in ka.rule_storage_container(canary, supported))


def test_restricted_rule_refuses_kserve_default_container(helm4: Helm) -> None:
    (isvc,) = isvcs_of(helm4.render(scenario("keda-values.yaml")))  # s3:// -> KServe's `default`
    default = {"default": ka.DEFAULT_STORAGE_CONTAINER["container"]}
    errors = ka.rule_restricted_storage_initializer(isvc, default)
    assert any("privilege escalation" in e for e in errors) and any("capabilities" in e for e in errors)
    fixed = copy.deepcopy(default)
    fixed["default"]["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert ka.rule_restricted_storage_initializer(isvc, fixed) == []


def test_every_rule_cites_the_kserve_source_it_mirrors() -> None:
    rules = [*ka.ISVC_RULES, ka.rule_storage_container, ka.rule_restricted_storage_initializer, ka.canary_replicas]
    for rule in rules:
        doc = rule.__doc__ or ""
        assert "Mirrors " in doc and "@ KSERVE_COMMIT" in doc and ("pkg/" in doc or "config/" in doc), rule.__name__
    assert len(ka.KSERVE_COMMIT) == 40
    tested = {r.__name__ for r, *_ in BAD_OBJECTS}
    assert tested == {r.__name__ for r in ka.ISVC_RULES}, "every rule needs a bad object"


# --------------------------------------------------------------------------------------------
# the chart refuses what KServe would refuse, saying why
# --------------------------------------------------------------------------------------------
GR = ("models.gr.predictor=general-recognition",)
GR_S3 = (*GR, "models.gr.weights.storageUri=s3://b/v1")
CANARY = ("kserve.gatewayApi.enabled=true", "models.gr.canary.enabled=true")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ((*GR_S3, "models.gr.canary.enabled=true"), "set kserve.gatewayApi.enabled=true"),
        ((*GR, "models.gr.weights.path=/m", *CANARY), "needs stable weights with a storage URI"),
        ((*GR_S3, *CANARY, "autoscaling.keda.enabled=true"), "KEDA and a Standard-mode canary do not mix"),
        (
            ("fullnameOverride=" + "r" * 39, *GR_S3, *CANARY),  # 39 + "-gr" = 42
            "the limit is 41",
        ),
        (
            (
                *GR,
                "models.gr.weights.storageUri=modelscope://damo/x",
                *CANARY,
                "models.gr.canary.weights.storageUri=s3://b/v2",
            ),
            "inherits spec.predictor.storageContainerName",
        ),
        ((*GR, "models.gr.weights.storageUri=modelscope://damo/x:v1"), "reads modelscope://owner/model@revision"),
        (
            (*GR, "models.gr.weights.storageUri=modelscope://damo/x@v1", "kserve.modelscopeStorageContainer="),
            "reads modelscope://owner/model:revision",
        ),
        ((*GR_S3, "kserve.deploymentMode=Knative", "autoscaling.metric=cpu"), "is not a Knative metric"),
        ((*GR_S3, "autoscaling.target=150"), "accepts a utilization target of 1-100"),
        ((*GR_S3, "models.gr.device=cuda", "models.gr.gpuCount=2"), "the server drives one device per pod"),
        ((*GR_S3, "models.gr.device=cuda"), "a GPU pool scales on queue depth"),
    ],
)
@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_chart_refuses_what_kserve_refuses(
    helms: dict[str, Helm], helm_name: str, sets: tuple[str, ...], message: str
) -> None:
    proc = helms[helm_name].template_text(sets=sets, check=False)
    assert proc.returncode != 0, f"rendered {sets}"
    assert message in proc.stderr, proc.stderr


def test_refusals_are_exact(helm4: Helm) -> None:
    """Each refusal stops only its own combination: one step back renders."""
    for sets in (
        (*GR_S3, *CANARY),  # canary with Gateway API, storage URI, HPA
        (*GR, "models.gr.weights.pvc.claimName=c", *CANARY),  # pvc:// is a storage URI too
        ("fullnameOverride=" + "r" * 38, *GR_S3, *CANARY),  # 41 characters
        ((*GR_S3, "models.gr.device=cuda", "models.gr.gpuCount=1", "autoscaling.keda.enabled=true")),
        ((*GR_S3, "models.gr.device=cuda", "autoscaling.maxReplicas=1")),
        ((*GR_S3, "kserve.deploymentMode=Knative")),  # metric defaults to concurrency
        ((*GR_S3, "extraEnv[0].name=PYTHONPATHX", "extraEnv[0].value=x")),
        ((*GR, "models.gr.weights.storageUri=modelscope://damo/x@v1")),  # ours, our syntax
        ((*GR, "models.gr.weights.storageUri=modelscope://damo/x:v1", "kserve.modelscopeStorageContainer=")),
    ):
        helm4.template_text(sets=sets)


def test_knative_scales_on_concurrency_by_default(helm4: Helm, storage_containers: dict[str, Any]) -> None:
    (isvc,) = isvcs_of(helm4.render(sets=(*GR_S3, "kserve.deploymentMode=Knative")))
    pred = isvc["spec"]["predictor"]
    assert (pred["scaleMetric"], pred["scaleTarget"]) == ("concurrency", 8)
    assert_admitted(isvc, storage_containers, restricted=False)
    (isvc,) = isvcs_of(helm4.render(sets=GR_S3))  # Standard keeps CPU utilization
    assert (isvc["spec"]["predictor"]["scaleMetric"], isvc["spec"]["predictor"]["scaleTarget"]) == ("cpu", 70)


@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_schema_refuses_pythonpath(helms: dict[str, Helm], helm_name: str) -> None:
    proc = helms[helm_name].lint(sets=(*GR_S3, "extraEnv[0].name=PYTHONPATH", "extraEnv[0].value=/x"))
    assert proc.returncode != 0 and "schema" in (proc.stdout + proc.stderr).lower()


def test_gateway_data_plane_may_reach_standard_pods(helm4: Helm) -> None:
    def namespaces(docs: list[dict[str, Any]]) -> set[str]:
        (np,) = [
            d
            for d in docs
            if d["kind"] == "NetworkPolicy" and "helm.sh/hook" not in d["metadata"].get("annotations", {})
        ]
        return {
            p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for rule in np["spec"]["ingress"]
            for p in rule["from"]
            if "namespaceSelector" in p
        }

    assert "envoy-gateway-system" in namespaces(helm4.render(scenario("canary-standard-values.yaml")))
    assert "envoy-gateway-system" not in namespaces(helm4.render(scenario("cpu-values.yaml")))
    knative = helm4.render(scenario("canary-knative-values.yaml"), sets=("kserve.gatewayApi.enabled=true",))
    assert "envoy-gateway-system" not in namespaces(knative)  # Knative's activator/gateway path instead
