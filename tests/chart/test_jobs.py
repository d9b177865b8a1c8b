"""Asynchronous jobs in the chart (values `jobs`): the server's env (URL inline or from a Secret, never
rendered then), the KEDA redis-streams trigger on each model's stream and group (the server's contract),
TLS, the schema's and the templates' refusals, KEDA's own webhooks on every ScaledObject (the chart's and
KServe's) next to every other autoscaler, the mirror of KEDA's rules (tests/chart/keda_admission.py)
agreeing with them, and what KEDA reads from a real redis-server through the rendered trigger."""

from __future__ import annotations

import copy
import math
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import keda_admission as keda
from . import kserve_harness as kh
from .conftest import CHART, NAMESPACE, RELEASE, REPO, SCENARIOS, Helm, scenario
from .test_chart import by_kind, env_of, release_policy, server_container, server_pods
from .test_kserve_code import cluster_for

JOBS = scenario("jobs-values.yaml")
# The server's contract: one stream per model, one consumer group on each.
STREAM = "predictors:jobs:{model}"
GROUP = "predictors"


def engine_stream_and_group(model: str) -> tuple[str, str]:
    """The stream and group the server itself writes a model's jobs to."""
    from predictors.jobs.store import GROUP as ENGINE_GROUP
    from predictors.jobs.store import stream_key

    return stream_key(model), ENGINE_GROUP


GR = ("models.gr.predictor=general-recognition", "models.gr.weights.path=/m")
GR_SCALING = (*GR, "autoscaling.maxReplicas=4")
URL_ON = ("jobs.enabled=true", "jobs.redis.url=redis://redis.redis.svc:6379/0")
SECRET_ON = (
    "jobs.enabled=true",
    "jobs.redis.existingSecret=vision-redis",
    "jobs.redis.address=redis.redis.svc:6379",
)


def scaled_objects(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {so["metadata"]["name"]: so for so in by_kind(docs, "ScaledObject")}


def trigger(so: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [t for t in so["spec"]["triggers"] if t["type"] == kind]
    return found


def pods_by_unit(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["labels"]["vision-predictors.io/unit"]: p for p in server_pods(docs) if p["track"] == "stable"}


def jobs_env(pod: dict[str, Any]) -> dict[str, Any]:
    env = env_of(server_container(pod["spec"]))
    return {k: v for k, v in env.items() if k.startswith("PREDICTORS_JOBS_") or k == "POD_NAME"}


# --------------------------------------------------------------------------------------------
# the server's env
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", sorted(set(SCENARIOS) - {"jobs-values.yaml"}))
def test_jobs_are_off_by_default(helm4: Helm, values: str) -> None:
    docs = helm4.render(scenario(values))
    assert not by_kind(docs, "ScaledObject")
    assert not by_kind(docs, "TriggerAuthentication")
    for pod in server_pods(docs):
        assert jobs_env(pod) == {}
    for isvc in by_kind(docs, "InferenceService"):
        assert isvc["metadata"]["annotations"].get("serving.kserve.io/autoscalerClass") != "external"


def test_url_goes_to_the_env_with_every_setting(helm4: Helm) -> None:
    url = "rediss://vision@valkey.redis.svc:6380/2"
    docs = helm4.render(sets=(*GR, "jobs.enabled=true", f"jobs.redis.url={url}", "jobs.maxBacklog=123"))
    (pod,) = server_pods(docs)
    assert jobs_env(pod) == {
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "PREDICTORS_JOBS_REDIS_URL": url,
        "PREDICTORS_JOBS_RESULT_TTL_SECONDS": "86400",
        "PREDICTORS_JOBS_MAX_BACKLOG": "123",
        "PREDICTORS_JOBS_VISIBILITY_TIMEOUT_SECONDS": "300",
        "PREDICTORS_JOBS_MAX_ATTEMPTS": "3",
    }


def test_existing_secret_is_read_by_reference_and_never_rendered(helm4: Helm) -> None:
    text = helm4.template_text(JOBS).stdout
    assert "redis://" not in text and "rediss://" not in text
    docs = helm4.render(JOBS)
    pods = pods_by_unit(docs)
    ref = {"secretKeyRef": {"name": "vision-redis", "key": "url"}}
    for unit in ("face-enhancement", "face-enhancement-batch", "general-recognition", "visual-entailment"):
        env = jobs_env(pods[unit])
        assert env["PREDICTORS_JOBS_REDIS_URL"] == ref
        assert env["PREDICTORS_JOBS_MAX_BACKLOG"] == "50000" and env["PREDICTORS_JOBS_RESULT_TTL_SECONDS"] == "172800"
    # a pool with jobs off gets none of it (its submit route answers 404 JOBS_DISABLED)
    assert jobs_env(pods["image-classification"]) == {}
    # KEDA's password comes from the same Secret through a TriggerAuthentication, not trigger metadata
    (auth,) = by_kind(docs, "TriggerAuthentication")
    assert auth["spec"] == {"secretTargetRef": [{"parameter": "password", "name": "vision-redis", "key": "password"}]}
    for so in by_kind(docs, "ScaledObject"):
        lag = trigger(so, "redis-streams")
        assert not {k for k in lag["metadata"] if "password" in k.lower()}
        assert lag["authenticationRef"] == {"name": auth["metadata"]["name"], "kind": "TriggerAuthentication"}


def test_users_own_trigger_authentication(helm4: Helm) -> None:
    docs = helm4.render(
        JOBS,
        sets=(
            "jobs.redis.passwordKey=",
            "jobs.keda.authenticationRef.name=redis-with-ca",
            "jobs.keda.authenticationRef.kind=ClusterTriggerAuthentication",
        ),
    )
    assert not by_kind(docs, "TriggerAuthentication")
    for so in by_kind(docs, "ScaledObject"):
        assert trigger(so, "redis-streams")["authenticationRef"] == {
            "name": "redis-with-ca",
            "kind": "ClusterTriggerAuthentication",
        }
    # a password-less Redis: no authentication at all
    docs = helm4.render(JOBS, sets=("jobs.redis.passwordKey=",))
    assert not by_kind(docs, "TriggerAuthentication")
    assert all("authenticationRef" not in trigger(so, "redis-streams") for so in by_kind(docs, "ScaledObject"))


# --------------------------------------------------------------------------------------------
# the trigger: the server's stream and group, lag per replica, TLS
# --------------------------------------------------------------------------------------------
def test_every_served_model_is_scaled_on_its_own_stream(helm4: Helm) -> None:
    docs = helm4.render(JOBS)
    sos = scaled_objects(docs)
    expected = {  # unit -> (model, lagCount, activationLagCount, min, max); fixed-size and jobs-off pools: none
        "face-enhancement": ("face-enhancement", 8, 0, 1, 4),
        "face-enhancement-batch": ("face-enhancement", 8, 50, 0, 8),
        "general-recognition": ("general-recognition", 20, 0, 1, 6),
    }
    assert set(sos) == {f"{RELEASE}-{unit}-predictor" for unit in expected}
    for unit, (model, lag_count, activation, low, high) in expected.items():
        so = sos[f"{RELEASE}-{unit}-predictor"]
        parsed, errors = keda.redis_streams(trigger(so, "redis-streams")["metadata"])
        assert errors == []
        assert (parsed["stream"], parsed["consumerGroup"]) == engine_stream_and_group(model)
        assert parsed["scaleFactor"] == "lag"  # not KEDA's pending-entries fallback
        assert (parsed["lagCount"], parsed["activationLagCount"]) == (lag_count, activation)
        assert (parsed["address"], parsed["tls"], parsed["databaseIndex"]) == ("valkey.redis.svc:6380", True, 0)
        assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (low, high)
    # each pool that takes jobs and scales has the trigger; the others have no ScaledObject
    isvcs = {i["metadata"]["labels"]["vision-predictors.io/unit"]: i for i in by_kind(docs, "InferenceService")}
    for unit, isvc in isvcs.items():
        autoscaler = isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"]
        assert autoscaler == ("external" if unit in expected else "hpa")
        if unit in expected:  # the chart's ScaledObject scales it: no KServe scaling fields
            assert not {"scaleMetric", "scaleTarget", "autoScaling"} & isvc["spec"]["predictor"].keys()


def test_the_pools_usual_triggers_stay_next_to_the_lag(helm4: Helm) -> None:
    sos = scaled_objects(helm4.render(JOBS))
    fe = sos[f"{RELEASE}-face-enhancement-predictor"]
    assert [t["type"] for t in fe["spec"]["triggers"]] == ["cpu", "redis-streams"]
    cpu = trigger(fe, "cpu")
    assert cpu["metricType"] == "Utilization" and cpu["metadata"] == {
        "value": "70",
        "containerName": "kserve-container",
    }
    gr = sos[f"{RELEASE}-general-recognition-predictor"]  # autoscaling.keda with cpu: false
    assert [t["type"] for t in gr["spec"]["triggers"]] == ["prometheus", "redis-streams"]
    assert trigger(gr, "prometheus")["metadata"] == {
        "serverAddress": "http://prometheus-operated.monitoring.svc:9090",
        "query": f'sum(predictors_queue_depth_items{{namespace="{NAMESPACE}",model="general-recognition"}})',
        "threshold": "16",
    }
    # the HPA behavior of the chart's HPAs (slow model loads: scale down gently)
    behavior = fe["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300


@pytest.mark.parametrize(
    ("url", "address", "tls", "database", "username"),
    [
        ("redis://redis-master.redis.svc/0", "redis-master.redis.svc:6379", "false", "0", None),
        ("rediss://default@cache.example.com:6380/3", "cache.example.com:6380", "true", "3", "default"),
        ("rediss://10.0.0.7", "10.0.0.7:6379", "true", "0", None),
        ("redis://[fd00::7]:7000/1?db=5", "[fd00::7]:7000", "false", "5", None),  # redis-py: ?db= wins
    ],
)
def test_connection_and_tls_from_the_url(
    helm4: Helm, url: str, address: str, tls: str, database: str, username: str | None
) -> None:
    docs = helm4.render(sets=(*GR_SCALING, "jobs.enabled=true", f"jobs.redis.url={url}"))
    (so,) = by_kind(docs, "ScaledObject")
    meta = trigger(so, "redis-streams")["metadata"]
    assert (meta["address"], meta["enableTLS"], meta["databaseIndex"], meta.get("username")) == (
        address,
        tls,
        database,
        username,
    )
    assert keda.redis_streams(meta)[0]["tls"] is (tls == "true")
    port = int(address.rsplit(":", 1)[1])
    assert {"ports": [{"port": port, "protocol": "TCP"}]} in release_policy(docs)["spec"]["egress"]


def test_connection_and_tls_with_existing_secret(helm4: Helm) -> None:
    docs = helm4.render(
        sets=(*GR_SCALING, *SECRET_ON, "jobs.redis.tls=true", "jobs.redis.databaseIndex=4", "jobs.redis.username=app")
    )
    (so,) = by_kind(docs, "ScaledObject")
    parsed, errors = keda.redis_streams(trigger(so, "redis-streams")["metadata"])
    assert errors == []
    assert (parsed["address"], parsed["tls"], parsed["databaseIndex"], parsed["username"]) == (
        "redis.redis.svc:6379",
        True,
        4,
        "app",
    )


def test_network_policy_lets_the_pods_reach_redis(helm4: Helm) -> None:
    (rule,) = [r for r in release_policy(helm4.render(JOBS))["spec"]["egress"] if r["ports"][0]["port"] == 6380]
    assert rule["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "redis"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "valkey"}},
        }
    ]
    # jobs off: no Redis egress
    rules = release_policy(helm4.render(sets=GR))["spec"]["egress"]
    assert [{p["port"] for p in r["ports"]} for r in rules] == [{53}]


def test_scale_to_zero_only_where_keda_reads_it(helm4: Helm) -> None:
    sos = scaled_objects(helm4.render(JOBS))
    batch = sos[f"{RELEASE}-face-enhancement-batch-predictor"]["spec"]
    assert batch["minReplicaCount"] == 0
    assert (batch["pollingInterval"], batch["cooldownPeriod"]) == (30, 300)
    for so in sos.values():
        assert keda.warnings(so) == []  # KEDA warns about pollingInterval/cooldownPeriod with a minimum > 0
    assert "pollingInterval" not in sos[f"{RELEASE}-face-enhancement-predictor"]["spec"]


# --------------------------------------------------------------------------------------------
# deployment mode and Knative
# --------------------------------------------------------------------------------------------
def test_deployment_mode_replaces_the_hpa(helm4: Helm) -> None:
    docs = helm4.render(
        scenario("deployment-values.yaml"),
        sets=(*URL_ON, "models.general-recognition.autoscaling.customMetric.enabled=false"),
    )
    unit = f"{RELEASE}-general-recognition"
    assert not by_kind(docs, "HorizontalPodAutoscaler")
    (so,) = by_kind(docs, "ScaledObject")
    assert so["metadata"]["name"] == unit
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": unit}
    # it takes over the chart's former HPA (same name) on an upgrade
    assert keda.hpa_name(so) == unit
    assert [t["type"] for t in so["spec"]["triggers"]] == ["cpu", "redis-streams"]
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    assert "replicas" not in deployments[unit]["spec"]
    # the fixed-size pool takes jobs too
    assert jobs_env(pods_by_unit(docs)["face-enhancement"])["PREDICTORS_JOBS_REDIS_URL"].startswith("redis://")
    # autoscaling.keda works in deployment mode as well now: the Prometheus query in a ScaledObject
    docs = helm4.render(
        scenario("deployment-values.yaml"),
        sets=(
            "models.general-recognition.autoscaling.customMetric.enabled=false",
            "models.general-recognition.autoscaling.keda.enabled=true",
        ),
    )
    (so,) = by_kind(docs, "ScaledObject")
    assert [t["type"] for t in so["spec"]["triggers"]] == ["cpu", "prometheus"]
    assert not by_kind(docs, "HorizontalPodAutoscaler")


def test_knative_pods_take_jobs_without_backlog_scaling(helm4: Helm) -> None:
    docs = helm4.render(
        scenario("canary-knative-values.yaml"),
        sets=(*URL_ON, "jobs.keda.enabled=false", "models.visual-entailment.autoscaling.minReplicas=1"),
    )
    assert not by_kind(docs, "ScaledObject")
    for pod in server_pods(docs):
        assert jobs_env(pod)["PREDICTORS_JOBS_REDIS_URL"] == "redis://redis.redis.svc:6379/0"


# --------------------------------------------------------------------------------------------
# refusals: the schema (helm lint) and the templates (helm template)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sets",
    [
        ("jobs.enabled=true",),  # neither url nor existingSecret
        ("jobs.redis.url=redis://h:6379", "jobs.redis.existingSecret=s"),  # both
        ("jobs.enabled=true", "jobs.redis.url=http://h:6379"),
        ("jobs.enabled=true", "jobs.redis.url=redis://h:6379/db0"),
        ("jobs.enabled=true", "jobs.redis.existingSecret=Not_A_Name"),
        ("jobs.enabled=true", "jobs.redis.existingSecret=s", "jobs.redis.address=redis.svc"),  # no port
        ("jobs.keda.lagCount=0",),  # KEDA would scale on pending entries instead
        ("jobs.keda.activationLagCount=-1",),
        ("jobs.keda.authenticationRef.kind=Secret",),
        ("jobs.maxAttempts=0",),
        ("jobs.redsi.url=redis://h",),
        (*GR, "models.gr.jobs.keda.lagcount=5"),
        (*GR, "models.gr.jobs.keda.pollingInterval=5"),  # global only
    ],
)
@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_schema_refuses_bad_jobs_values(helms: dict[str, Helm], helm_name: str, sets: tuple[str, ...]) -> None:
    proc = helms[helm_name].lint(sets=sets)
    assert proc.returncode != 0, f"accepted {sets}:\n{proc.stdout}"
    assert "schema" in (proc.stdout + proc.stderr).lower()


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ((*GR, "jobs.enabled=true", "jobs.redis.url=redis://:hunter2@h:6379/0"), "carries a password"),
        ((*GR, *URL_ON, "jobs.redis.tls=true"), "are for jobs.redis.existingSecret"),
        ((*GR_SCALING, "jobs.enabled=true", "jobs.redis.existingSecret=s"), "set jobs.redis.address"),
        ((*GR, "models.gr.jobs.enabled=true"), "Redis is not set"),
        (
            (*GR_SCALING, *SECRET_ON, "jobs.redis.passwordKey=password", "jobs.keda.authenticationRef.name=mine"),
            "choose one",
        ),
        ((*GR, *URL_ON, "kserve.deploymentMode=Knative", "autoscaling.metric=concurrency"), "jobs.keda.enabled=false"),
        (
            (*GR, *URL_ON, "kserve.deploymentMode=Knative", "jobs.keda.enabled=false", "autoscaling.minReplicas=0"),
            "a Knative pool at zero takes no jobs",
        ),
        ((*GR, "autoscaling.minReplicas=0", "autoscaling.maxReplicas=2"), "or jobs scaling"),
        (
            (*GR, *URL_ON, "jobs.keda.enabled=false", "autoscaling.minReplicas=0", "autoscaling.maxReplicas=2"),
            "or jobs scaling",
        ),
        (
            (
                "models.gr.predictor=general-recognition",
                "models.gr.weights.storageUri=s3://b/m",
                "kserve.gatewayApi.enabled=true",
                "models.gr.canary.enabled=true",
                "autoscaling.maxReplicas=3",
                *URL_ON,
            ),
            "jobs scaling and a Standard-mode canary do not mix",
        ),
        (
            ("mode=deployment", *GR_SCALING, *URL_ON, "autoscaling.customMetric.enabled=true"),
            "cannot carry autoscaling.customMetric",
        ),
        (
            (
                "fullnameOverride=a-release-prefix-of-33-characters",
                "models.general-rec.predictor=general-recognition",
                "models.general-rec.weights.path=/m",
                "autoscaling.keda.enabled=true",
            ),
            "with autoscaling.keda the limit is 44",
        ),
    ],
)
def test_template_refuses_contradictory_jobs_values(helm4: Helm, sets: tuple[str, ...], message: str) -> None:
    assert message in helm4.template_error(sets=sets)


# --------------------------------------------------------------------------------------------
# KEDA's own webhooks (tests/keda, through kserve_harness) on every ScaledObject, the chart's and KServe's,
# next to every other autoscaler of the namespace; the Python mirror (keda_admission.py) agreeing with them
# --------------------------------------------------------------------------------------------
def keda_verdicts(report: kh.Report) -> dict[str, dict[str, Any]]:
    return {f"{v['kind']}/{v['name']}": v for v in report.scaled_objects}


def created(report: kh.Report, kind: str) -> list[dict[str, Any]]:
    return [o for isvc in report.isvcs for o in kh.written(isvc, kind)]


@pytest.mark.parametrize("values", SCENARIOS)
def test_every_scaled_object_is_admitted_by_keda(helm4: Helm, values: str) -> None:
    docs = helm4.render(scenario(values))
    report = kh.admit(docs, cluster_for(values))
    verdicts = keda_verdicts(report)
    expected = {f"ScaledObject/{o['metadata']['name']}" for o in by_kind(docs, "ScaledObject")}
    expected |= {f"ScaledObject/{o['metadata']['name']}" for o in created(report, "ScaledObject")}
    expected |= {f"TriggerAuthentication/{o['metadata']['name']}" for o in by_kind(docs, "TriggerAuthentication")}
    assert set(verdicts) == expected
    assert [v for v in verdicts.values() if not v["admitted"]] == []
    # one autoscaler per Deployment (KEDA refuses a second; two would fight over the replicas)
    autoscalers = by_kind(docs, "ScaledObject") + by_kind(docs, "HorizontalPodAutoscaler")
    autoscalers += created(report, "ScaledObject") + created(report, "HorizontalPodAutoscaler")
    targets = [o["spec"]["scaleTargetRef"]["name"] for o in autoscalers]
    assert len(targets) == len(set(targets))
    rendered_auth = {a["metadata"]["name"] for a in by_kind(docs, "TriggerAuthentication")}
    for so in by_kind(docs, "ScaledObject"):
        for t in so["spec"]["triggers"]:
            if "authenticationRef" in t:
                assert t["authenticationRef"]["name"] in rendered_auth


def test_jobs_scenario_exercises_kedas_rules(helm4: Helm) -> None:
    """The scenario has the objects KEDA's webhook looks at (so their passing means something)."""
    report = kh.admit(helm4.render(JOBS), cluster_for("jobs-values.yaml"))
    sos = by_kind(helm4.render(JOBS), "ScaledObject")
    assert len(sos) == 3 and len(created(report, "HorizontalPodAutoscaler")) == 2  # KServe's, hpa-class pools
    assert {t["type"] for so in sos for t in so["spec"]["triggers"]} == {"cpu", "prometheus", "redis-streams"}


NO_CUSTOM_METRIC = "models.general-recognition.autoscaling.customMetric.enabled=false"


def hpas_of_the_release(helm4: Helm, values: str, sets: tuple[str, ...]) -> list[dict[str, Any]]:
    """The HPAs a release leaves in the namespace: the chart's (deployment mode) or KServe's."""
    docs = helm4.render(values, sets=sets)
    report = kh.admit(docs, cluster_for(Path(values).name))
    return by_kind(docs, "HorizontalPodAutoscaler") + created(report, "HorizontalPodAutoscaler")


@pytest.mark.parametrize(
    ("values", "before", "after"),
    [
        # KServe Standard: KServe's HPAs <isvc>-predictor (the batch pool could not be at zero without jobs)
        (JOBS, ("jobs.enabled=false", "models.face-enhancement-batch.autoscaling.minReplicas=1"), ()),
        # deployment mode: the chart's own HPA <unit>
        (scenario("deployment-values.yaml"), (NO_CUSTOM_METRIC,), (NO_CUSTOM_METRIC, *URL_ON)),
    ],
    ids=["kserve-standard", "deployment"],
)
def test_upgrade_from_the_hpa_is_admitted(
    helm4: Helm, values: str, before: tuple[str, ...], after: tuple[str, ...]
) -> None:
    """helm upgrade creates the ScaledObject while the HPA of the previous release still exists (KServe's,
    deleted only once it reconciles autoscalerClass external; or the chart's, which Helm deletes last):
    KEDA's webhook admits it because it takes that HPA over by name, and refuses it without that."""
    old_hpas = hpas_of_the_release(helm4, values, before)
    new_docs = [d for d in helm4.render(values, sets=after) if d["kind"] != "HorizontalPodAutoscaler"]
    new_sos = by_kind(new_docs, "ScaledObject")
    old_targets = {h["spec"]["scaleTargetRef"]["name"] for h in old_hpas}
    taking_over = [so for so in new_sos if so["spec"]["scaleTargetRef"]["name"] in old_targets]
    assert taking_over and old_hpas
    cluster = cluster_for(Path(values).name)
    verdicts = keda_verdicts(kh.admit(new_docs, cluster, existing=old_hpas))
    assert all(verdicts[f"ScaledObject/{so['metadata']['name']}"]["admitted"] for so in new_sos), verdicts
    for so in taking_over:
        so["metadata"]["annotations"].pop("scaledobject.keda.sh/transfer-hpa-ownership")
    verdicts = keda_verdicts(kh.admit(new_docs, cluster, existing=old_hpas))
    for so in taking_over:
        assert "is already managed by the hpa" in verdicts[f"ScaledObject/{so['metadata']['name']}"]["message"]


def _so(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (so,) = [d for d in by_kind(docs, "ScaledObject")
             if d["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-face-enhancement-predictor"]
    return so


DEPLOYMENT_JOBS = (scenario("deployment-values.yaml"), (NO_CUSTOM_METRIC, *URL_ON))


def _no_cpu_request(docs: list[dict[str, Any]]) -> None:
    """The chart's Deployment (deployment mode) without a cpu request or limit. (KServe would fill in its
    own default resources on its Deployment: there this cannot happen.)"""
    for deployment in by_kind(docs, "Deployment"):
        resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
        resources["requests"].pop("cpu")
        resources["limits"].pop("cpu")


def _only_cpu_at_zero(docs: list[dict[str, Any]]) -> None:
    so = _so(docs)
    so["spec"]["minReplicaCount"] = 0
    so["spec"]["triggers"] = [t for t in so["spec"]["triggers"] if t["type"] == "cpu"]


def _second_scaled_object(docs: list[dict[str, Any]]) -> None:
    other = copy.deepcopy(_so(docs))
    other["metadata"]["name"] = "someone-else"
    other["spec"].pop("advanced", None)
    docs.append(other)


#: (scenario and values, mutation of its documents, what KEDA's webhook says about a ScaledObject)
KEDA_BAD_COPIES = [
    ((JOBS, ()), lambda docs: _so(docs)["metadata"].update(name="x" * 64), "name"),
    ((JOBS, ()), lambda docs: _so(docs)["spec"].update(minReplicaCount=5), "must be less than MaxReplicaCount"),
    ((JOBS, ()), lambda docs: _so(docs)["spec"]["triggers"][1].update(name="cpu"), "defined multiple times"),
    (DEPLOYMENT_JOBS, _no_cpu_request, "doesn't have the cpu request defined"),
    ((JOBS, ()), _only_cpu_at_zero, "only cpu/memory triggers AND minReplica is 0"),
    ((JOBS, ()), _second_scaled_object, "is already managed by the ScaledObject"),
]


def _autoscalers_and_pods(docs: list[dict[str, Any]], report: kh.Report) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """The namespace's ScaledObjects and HPAs (rendered and KServe's), and each Deployment's pod spec."""
    sos = by_kind(docs, "ScaledObject") + created(report, "ScaledObject")
    hpas = by_kind(docs, "HorizontalPodAutoscaler") + created(report, "HorizontalPodAutoscaler")
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"]
            for d in by_kind(docs, "Deployment") + created(report, "Deployment")}
    return sos, hpas, pods


@pytest.mark.parametrize(("rendering", "mutate", "message"), KEDA_BAD_COPIES, ids=[m for _, _, m in KEDA_BAD_COPIES])
def test_keda_refuses_each_bad_copy_and_the_mirror_agrees(
    helm4: Helm, rendering: tuple[str, tuple[str, ...]], mutate: Any, message: str
) -> None:
    values, sets = rendering
    cluster = cluster_for(Path(values).name)
    docs = helm4.render(values, sets=sets)
    assert [v for v in kh.admit(docs, cluster).scaled_objects if not v["admitted"]] == []
    mutate(docs)
    report = kh.admit(docs, cluster)
    refused = {v["name"]: v["message"] for v in report.scaled_objects if not v["admitted"]}
    assert any(message in m for m in refused.values()), report.scaled_objects
    # the mirror refuses the same ScaledObjects (its webhook rules: the scalers' are not run by KEDA's here)
    sos, hpas, pods = _autoscalers_and_pods(docs, report)
    mirrored = {so["metadata"]["name"] for so in sos
                if keda.webhook_errors(so, pods[so["spec"]["scaleTargetRef"]["name"]], sos, hpas)}
    assert mirrored == set(refused)


def test_mirror_agrees_with_keda_on_every_scenario(helm4: Helm) -> None:
    checked = 0
    for values in SCENARIOS:
        docs = helm4.render(scenario(values))
        report = kh.admit(docs, cluster_for(values))
        sos, hpas, pods = _autoscalers_and_pods(docs, report)
        rendered = {so["metadata"]["name"] for so in by_kind(docs, "ScaledObject")}
        for so in sos:
            pod = pods[so["spec"]["scaleTargetRef"]["name"]]
            # KServe's own objects carry a status, which is no part of what a chart renders
            rules = keda.admission_errors if so["metadata"]["name"] in rendered else keda.webhook_errors
            assert rules(so, pod, sos, hpas) == []
            assert keda_verdicts(report)[f"ScaledObject/{so['metadata']['name']}"]["admitted"]
            checked += 1
    assert checked >= 5


#: rules of KEDA's scalers (pkg/scalers: one package holding every scaler and its cloud SDK, not run by
#: the harness): the mirror alone checks the rendered trigger parameters, on a real Redis below.
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda so: trigger(so, "redis-streams")["metadata"].update(lagcount="8"), "unexpected parameter 'lagcount'"),
        (lambda so: trigger(so, "redis-streams")["metadata"].update(enableTLS="yes"), "EnableTLS parsing error"),
        (lambda so: trigger(so, "redis-streams")["metadata"].pop("stream"), "missing redis stream name"),
        (lambda so: trigger(so, "redis-streams")["metadata"].pop("address"), "no addresses"),
        (lambda so: trigger(so, "redis-streams")["metadata"].update(lagCount="eight"), "is not an integer"),
        (lambda so: trigger(so, "cpu").pop("metricType"), "unknown metric type"),
    ],
)
def test_scaler_parameter_rules_refuse_bad_objects(helm4: Helm, mutate: Any, message: str) -> None:
    so = _so(helm4.render(JOBS))
    assert keda.rule_scaler_metadata(so) == []
    mutate(so)
    errors = keda.rule_scaler_metadata(so)
    assert any(message in e for e in errors), errors


def test_a_trigger_without_lag_count_would_scale_on_pending_entries() -> None:
    """Why lagCount >= 1 is required: KEDA silently switches to XPENDING (jobs already running)."""
    parsed, errors = keda.redis_streams({"address": "r:6379", "stream": "s", "consumerGroup": GROUP})
    assert errors == [] and parsed["scaleFactor"] == "pending"
    _, errors = keda.redis_streams(
        {"address": "r:6379", "stream": "s", "consumerGroup": GROUP, "enableTLS": "true"}, {"tls": "enable"}
    )
    assert any("both ScaledObject and TriggerAuthentication" in e for e in errors)


# --------------------------------------------------------------------------------------------
# what KEDA reads through the rendered trigger, against a real redis-server
# --------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Debian's redis-server (ci/install-system-packages.sh) on a free loopback port, in a temporary directory."""
    binary = (
        shutil.which("redis-server")
        or subprocess.run(
            ["bash", str(REPO / "ci" / "install-system-packages.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    directory: Path = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_keda_reads_the_backlog_of_the_rendered_stream(helm4: Helm, redis_port: int) -> None:
    import redis

    docs = helm4.render(
        sets=(
            *GR_SCALING,
            "jobs.enabled=true",
            f"jobs.redis.url=redis://127.0.0.1:{redis_port}/3",
            "jobs.keda.lagCount=2",
        )
    )
    (so,) = by_kind(docs, "ScaledObject")
    meta, errors = keda.redis_streams(trigger(so, "redis-streams")["metadata"])
    assert errors == [] and not meta["tls"]
    host, port = meta["address"].rsplit(":", 1)
    keda_client = redis.Redis(host=host, port=int(port), db=meta["databaseIndex"])
    # the server's side: submits XADD to the model's stream, whose group its workers create
    stream, group = engine_stream_and_group("general-recognition")
    server = redis.Redis(port=redis_port, db=3)
    server.delete(stream)
    assert keda.redis_streams_lag(keda_client, meta["stream"], meta["consumerGroup"]) == 0  # nothing yet
    server.xgroup_create(stream, group, id="0", mkstream=True)
    for i in range(5):
        server.xadd(stream, {"job": f"j{i}"})
    lag = keda.redis_streams_lag(keda_client, meta["stream"], meta["consumerGroup"])
    assert lag == 5
    assert math.ceil(lag / meta["lagCount"]) == 3  # replicas the HPA asks for (AverageValue)
    assert lag > meta["activationLagCount"]  # active: a pool at zero wakes up
    # a pod takes two: they are running (pending), no longer waiting, so no longer scale-out pressure
    server.xreadgroup(group, f"{RELEASE}-gr-predictor-abc12", {stream: ">"}, count=2)
    assert keda.redis_streams_lag(keda_client, meta["stream"], meta["consumerGroup"]) == 3
    # another database holds nothing: the trigger's databaseIndex is the one the server writes to
    assert keda.redis_streams_lag(redis.Redis(port=redis_port, db=0), stream, group) == 0


# --------------------------------------------------------------------------------------------
# values and docs stay in step
# --------------------------------------------------------------------------------------------
def test_notes_show_submit_and_backlog(helm4: Helm) -> None:
    proc = helm4.run("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", "-f", JOBS)
    notes = proc.stdout.split("NOTES:", 1)[1]
    for model in ("face-enhancement", "general-recognition", "visual-entailment"):
        assert f'"$URL/v2/models/{model}/jobs" -d @request.json' in notes
        assert f"XINFO GROUPS {STREAM.format(model=model)}\n" in notes
    assert "XINFO GROUPS predictors:jobs:image-classification" not in notes  # its only pool has jobs off
    assert "(models.image-classification.jobs.enabled=false): 404 JOBS_DISABLED" in notes
    assert f"get scaledobject {RELEASE}-face-enhancement-batch-predictor" in notes


def _value_paths(node: dict[str, Any], prefix: str) -> Iterator[str]:
    """Dotted paths of the values a user sets (a map of plain values is one setting: authenticationRef)."""
    for key, value in node.items():
        path = f"{prefix}.{key}"
        if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            yield from _value_paths(value, path)
        else:
            yield path


def test_readme_documents_the_jobs_values() -> None:
    import yaml

    readme = (CHART / "README.md").read_text()
    paths = list(_value_paths(yaml.safe_load((CHART / "values.yaml").read_text())["jobs"], "jobs"))
    assert len(paths) >= 18
    assert [p for p in paths if f"`{p}" not in readme] == []
    assert "XINFO GROUPS predictors:jobs:" in readme
