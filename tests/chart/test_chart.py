"""charts/vision-predictors: lint (Helm 3 and 4), rendering, strict schema validation and semantics.

Semantics are checked against what consumes the output: KServe (CRD fields, the first port of
kserve-container, predictor labels copied to pods), Kubernetes (selectors, probes, HPA target) and
the server itself (its CLI parser and pydantic Settings read the rendered args and env).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CHART, NAMESPACE, RELEASE, SCENARIOS, Helm, scenario

EXPECTED_SCENARIOS = {
    "cpu-values.yaml",
    "gpu-values.yaml",
    "canary-standard-values.yaml",
    "canary-knative-values.yaml",
    "deployment-values.yaml",
    "keda-values.yaml",
    "restricted-storage-values.yaml",
    "jobs-values.yaml",
}
# Kinds of the Prometheus Operator and of KEDA: no schema available offline; checked by hand below and,
# for KEDA's, by tests/chart/keda_admission.py (test_jobs.py).
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor"}
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
K8S_VERSIONS = ("1.30.0", "1.37.0")  # Chart.yaml kubeVersion floor, and the newest bundled schema
SETTINGS_ENV = yaml.safe_load((CHART / "files" / "settings-env.yaml").read_text())
CHART_ENV_NAMES = {name for section in ("settings", "chart", "jobs") for name in SETTINGS_ENV[section].values()}
# Server settings the chart deliberately leaves to the server: the consumer name is per pod, and the
# server's default for it is the POD_NAME the chart sets from the downward API.
LEFT_TO_THE_SERVER = {"PREDICTORS_JOBS_CONSUMER_NAME"}
# What a secretKeyRef env var holds at run time (the Secret is the user's): a URL with a password.
SECRET_URL_STANDIN = "rediss://:s3cret@redis.example.com:6380/0"
HTTP_PORT, GRPC_PORT = 8080, 8081  # server contract


# --------------------------------------------------------------------------------------------
# helpers: the pods a rendering produces, as (labels, pod spec, context)
# --------------------------------------------------------------------------------------------
def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def is_test_hook(doc: dict[str, Any]) -> bool:
    return doc.get("metadata", {}).get("annotations", {}).get("helm.sh/hook") == "test"


def helm_test_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (pod,) = [d for d in docs if is_test_hook(d) and d["kind"] == "Pod"]
    return pod


def release_policy(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (np,) = [d for d in by_kind(docs, "NetworkPolicy") if not is_test_hook(d)]
    return np


def server_pods(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every model-server pod template: labels as the pod will carry them, the pod spec, its origin."""
    pods = []
    for d in by_kind(docs, "Deployment"):
        tpl = d["spec"]["template"]
        pods.append(
            {
                "owner": d,
                "labels": tpl["metadata"]["labels"],
                "spec": tpl["spec"],
                "track": "stable",
                "annotations": tpl["metadata"].get("annotations", {}),
            }
        )
    for isvc in by_kind(docs, "InferenceService"):
        name = isvc["metadata"]["name"]
        components = [("stable", isvc["spec"]["predictor"])]
        components += [("canary", c["predictor"]) for c in isvc["spec"].get("canary", [])]
        for track, pred in components:
            # KServe copies spec.predictor.labels onto the pods and adds its own.
            labels = {
                **pred.get("labels", {}),
                "serving.kserve.io/inferenceservice": name,
                "component": "predictor",
            }
            pods.append(
                {
                    "owner": isvc,
                    "labels": labels,
                    "spec": pred,
                    "track": track,
                    "annotations": pred.get("annotations", {}),
                }
            )
    return pods


def server_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec["containers"]
    assert containers[0]["name"] == "kserve-container"
    return containers[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions)."""
    if not selector:
        return True
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, vals = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and labels.get(key) in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def render_all(helm4: Helm) -> dict[str, list[dict[str, Any]]]:
    return {s: helm4.render(scenario(s)) for s in SCENARIOS}


# --------------------------------------------------------------------------------------------
# lint and render: Helm 3 and Helm 4, every scenario
# --------------------------------------------------------------------------------------------
def test_ci_scenarios_present() -> None:
    assert set(SCENARIOS) == EXPECTED_SCENARIOS


@pytest.mark.parametrize("values", ["<defaults>", *SCENARIOS])
@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_lint_strict(helms: dict[str, Helm], helm_name: str, values: str) -> None:
    files = () if values == "<defaults>" else (scenario(values),)
    proc = helms[helm_name].lint(*files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values", SCENARIOS)
def test_helm3_and_helm4_render_identically(helm3: Helm, helm4: Helm, values: str) -> None:
    docs = helm4.render(scenario(values))
    assert docs, "nothing rendered"
    assert helm3.render(scenario(values)) == docs


# --------------------------------------------------------------------------------------------
# values.schema.json rejects unknown keys and invalid combinations
# --------------------------------------------------------------------------------------------
CONSTRAINT_KEYWORDS = {"if", "then", "else", "not"}


def test_schema_forbids_unknown_keys_everywhere() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    loose = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node:
                if "properties" in node and node.get("additionalProperties") is not False:
                    loose.append(path)
                if (
                    "properties" not in node
                    and "additionalProperties" not in node
                    and not ({"oneOf", "anyOf"} & node.keys())
                    and path != "/properties/global"
                ):
                    loose.append(path)  # an object without properties must say what its values are
            for k, v in node.items():
                # if/then/else/not only constrain an object defined elsewhere: they list no keys of their own
                if k not in CONSTRAINT_KEYWORDS:
                    walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(schema, "")
    assert loose == [], f"objects accepting unknown keys: {loose}"


@pytest.mark.parametrize(
    "sets",
    [
        ("replicaCount=2",),  # unknown top-level key
        ("models.gr.predictor=general-recognition", "models.gr.weights.path=/m", "models.gr.devcie=cuda"),
        (
            "models.gr.predictor=general-recognition",
            "models.gr.weights.path=/m",
            "models.gr.settings.maxBatchSze=4",
        ),
        ("settings.maxBachSize=4",),
        ("image.tagg=1",),
        ("networkPolicy.ingress.namespace=x",),
        (
            "models.gr.predictor=general-recognition",
            "models.gr.weights.path=/m",
            "models.gr.canary.trafficPercnt=5",
        ),
        # invalid values, not only unknown keys
        ("models.gr.predictor=image-segmentation", "models.gr.weights.path=/m"),
        (
            "models.gr.predictor=general-recognition",
            "models.gr.weights.path=/m",
            "models.gr.weights.storageUri=s3://b/m",
        ),
        ("models.gr.predictor=general-recognition", "models.gr.weights.path=/m", "models.gr.device=gpu"),
        (
            "models.gr.predictor=general-recognition",
            "models.gr.weights.path=/m",
            "models.gr.canary.trafficPercent=101",
        ),
        ("extraEnv[0].name=PREDICTORS_MAX_QUEUE", "extraEnv[0].value=1"),
        ("securityContext.allowPrivilegeEscalation=true",),
        ("settings.logLevel=TRACE",),
    ],
)
@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_lint_rejects_typos_and_bad_values(
    helms: dict[str, Helm], helm_name: str, sets: tuple[str, ...]
) -> None:
    proc = helms[helm_name].lint(sets=sets)
    assert proc.returncode != 0, f"accepted {sets}:\n{proc.stdout}"
    assert "schema" in (proc.stdout + proc.stderr).lower()


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            (
                "mode=deployment",
                "models.gr.predictor=general-recognition",
                "models.gr.weights.storageUri=s3://b/m",
            ),
            "weights.storageUri needs KServe",
        ),
        (
            (
                "mode=deployment",
                "models.gr.predictor=general-recognition",
                "models.gr.weights.path=/m",
                "models.gr.canary.enabled=true",
            ),
            "canary is supported in kserve mode only",
        ),
        (
            (
                "models.gr.predictor=general-recognition",
                "models.gr.weights.path=/m",
                "autoscaling.metric=concurrency",
            ),
            "needs kserve.deploymentMode Knative",
        ),
        (
            (
                "models.gr.predictor=general-recognition",
                "models.gr.weights.path=/m",
                "kserve.deploymentMode=Knative",
                "autoscaling.keda.enabled=true",
            ),
            "KEDA autoscaling needs kserve.deploymentMode Standard",
        ),
        (
            (
                "models.gr.predictor=general-recognition",
                "models.gr.weights.path=/m",
                "autoscaling.minReplicas=0",
            ),
            "scale to zero",
        ),
        (
            (
                "models.general-recognition.predictor=general-recognition",
                "models.general-recognition.weights.path=/m",
                "fullnameOverride=a-long-release-prefix-for-tests",
            ),
            "the limit is 45",
        ),
    ],
)
def test_template_fails_on_contradictory_values(helm4: Helm, sets: tuple[str, ...], message: str) -> None:
    assert message in helm4.template_error(sets=sets)


# --------------------------------------------------------------------------------------------
# strict validation: built-in kinds (kubernetes-validate) and InferenceServices (KServe CRD)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", SCENARIOS)
def test_builtin_objects_validate_strict(helm4: Helm, values: str) -> None:
    import kubernetes_validate

    docs = helm4.render(scenario(values))
    checked = 0
    for doc in docs:
        if doc["kind"] in {"InferenceService", "PrometheusRule"} or doc["kind"] in OPERATOR_KINDS | KEDA_KINDS:
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 4  # ServiceAccount, NetworkPolicy, PDB, test Pod at least


@pytest.mark.parametrize("values", SCENARIOS)
def test_inferenceservices_validate_against_kserve_crd(helm4: Helm, isvc_validator: Any, values: str) -> None:
    docs = helm4.render(scenario(values))
    isvcs = by_kind(docs, "InferenceService")
    mode = yaml.safe_load(Path(scenario(values)).read_text()).get("mode", "kserve")
    assert bool(isvcs) == (mode == "kserve")
    for isvc in isvcs:
        errors = sorted(isvc_validator.iter_errors(isvc), key=str)
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_crd_validation_catches_a_misspelled_field(isvc_validator: Any, helm4: Helm) -> None:
    isvc = by_kind(helm4.render(scenario("canary-standard-values.yaml")), "InferenceService")[0]
    isvc["spec"]["canary"][0]["trafficPercentage"] = isvc["spec"]["canary"][0].pop("trafficPercent")
    assert list(isvc_validator.iter_errors(isvc))
    isvc = by_kind(helm4.render(scenario("cpu-values.yaml")), "InferenceService")[0]
    isvc["spec"]["predictor"]["containers"][0]["readinesProbe"] = {}
    assert list(isvc_validator.iter_errors(isvc))


# --------------------------------------------------------------------------------------------
# the server reads what the chart renders: CLI args, PREDICTORS_* env, ports, probe paths
# --------------------------------------------------------------------------------------------
def _settings_env_names() -> set[str]:
    try:
        from predictors.settings import Settings
    except ImportError:
        # TODO: predictors.settings is not importable: compare against the server contract instead.
        # Check predictors/settings.py (class Settings, env_prefix PREDICTORS_) and keep this list in sync.
        return {
            "PREDICTORS_MODEL_REPOSITORY",
            "PREDICTORS_MODELS",
            "PREDICTORS_MODEL_DIRS",
            "PREDICTORS_HTTP_PORT",
            "PREDICTORS_GRPC_PORT",
            "PREDICTORS_DEVICE",
            "PREDICTORS_MAX_BATCH_SIZE",
            "PREDICTORS_MAX_LATENCY_MS",
            "PREDICTORS_MAX_QUEUE",
            "PREDICTORS_MAX_BODY_BYTES",
            "PREDICTORS_MAX_IMAGE_PIXELS",
            "PREDICTORS_MAX_ITEMS_PER_REQUEST",
            "PREDICTORS_LOG_LEVEL",
            "PREDICTORS_SHUTDOWN_GRACE_SECONDS",
        }
    prefix = Settings.model_config.get("env_prefix", "")
    assert prefix == "PREDICTORS_"
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def test_settings_env_list_matches_the_server() -> None:
    server_names = _settings_env_names()
    chart_names = CHART_ENV_NAMES
    assert chart_names <= server_names, (
        f"chart sets env vars the server does not read: {chart_names - server_names}"
    )
    # Every tunable the server has (besides model selection, which the chart passes as args) is exposed.
    model_selection = {"PREDICTORS_MODEL_REPOSITORY", "PREDICTORS_MODELS", "PREDICTORS_MODEL_DIRS"}
    assert server_names - model_selection - LEFT_TO_THE_SERVER - chart_names == set()
    # values.yaml exposes exactly the settings keys of the list
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["settings"]) == set(SETTINGS_ENV["settings"])


@pytest.mark.parametrize("values", SCENARIOS)
def test_rendered_env_names_come_from_the_one_list(helm4: Helm, values: str) -> None:
    allowed = CHART_ENV_NAMES
    for pod in server_pods(helm4.render(scenario(values))):
        names = {n for n in env_of(server_container(pod["spec"])) if n.startswith("PREDICTORS_")}
        assert names <= allowed
        assert set(SETTINGS_ENV["chart"].values()) <= names


@pytest.mark.parametrize("values", SCENARIOS)
def test_server_accepts_rendered_args_and_env(
    helm4: Helm, values: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Feed each container's args and env to the server's own CLI parser and Settings."""
    try:
        from predictors.cli import build_parser, settings_from_args
    except ImportError:  # pragma: no cover - TODO: predictors/cli/__init__.py (build_parser, settings_from_args)
        pytest.fail("predictors.cli is not importable; the chart must be checked against the real server")
    for pod in server_pods(helm4.render(scenario(values))):
        c = server_container(pod["spec"])
        for name in list(os.environ):
            if name.startswith("PREDICTORS_"):
                monkeypatch.delenv(name)
        for name, value in env_of(c).items():
            if name.startswith("PREDICTORS_"):
                if isinstance(value, dict) and "secretKeyRef" in value:
                    value = SECRET_URL_STANDIN
                assert isinstance(value, str), name
                monkeypatch.setenv(name, value)
        args = build_parser().parse_args(c["args"])
        assert args.command == "serve"
        settings = settings_from_args(args)
        model = pod["labels"]["vision-predictors.io/model"]
        assert list(settings.model_dirs) == [model]
        weights_dir = str(settings.model_dirs[model])
        assert weights_dir == "/mnt/models" or weights_dir.startswith("/opt/models/")
        assert settings.http_port == HTTP_PORT and settings.grpc_port == GRPC_PORT
        device = pod["labels"]["vision-predictors.io/device"]
        assert settings.device == device
        # the drain window the pod grants covers the server's own drain time
        if "terminationGracePeriodSeconds" in pod["spec"]:
            stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert pod["spec"]["terminationGracePeriodSeconds"] == stop + settings.shutdown_grace_seconds + 5


@pytest.mark.parametrize("values", SCENARIOS)
def test_ports_and_probes_point_at_the_server(helm4: Helm, values: str) -> None:
    knative = "knative" in values
    for pod in server_pods(helm4.render(scenario(values))):
        c = server_container(pod["spec"])
        model = pod["labels"]["vision-predictors.io/model"]
        assert c["args"][:2] == ["serve", "--model-dir"] and c["args"][2].startswith(f"{model}=")
        first = c["ports"][0]
        assert first["containerPort"] == HTTP_PORT
        # KServe routes to the first port; Knative wants it named http1 (or h2c), and one port only.
        if pod["owner"]["kind"] == "InferenceService":
            assert first["name"] == "http1"
        else:
            assert first["name"] == "http"
        if knative:
            assert len(c["ports"]) == 1
            assert env_of(c)["PREDICTORS_ENABLE_GRPC"] == "false"
        else:
            assert c["ports"][1] == {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"}
            assert env_of(c)["PREDICTORS_ENABLE_GRPC"] == "true"
        ready = f"/v2/models/{model}/ready"
        assert c["readinessProbe"]["httpGet"] == {"path": ready, "port": HTTP_PORT}
        assert c["startupProbe"]["httpGet"] == {"path": ready, "port": HTTP_PORT}
        assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": HTTP_PORT}
        # generous startup budget for download + load + warm-up; liveness only starts after it
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
        assert env_of(c)["PREDICTORS_HTTP_PORT"] == str(HTTP_PORT)
        if pod["annotations"].get("prometheus.io/scrape") == "true":
            assert pod["annotations"]["prometheus.io/port"] == str(HTTP_PORT)
            assert pod["annotations"]["prometheus.io/path"] == "/metrics"


def test_knative_pods_defer_draining_to_knative(helm4: Helm) -> None:
    docs = helm4.render(scenario("canary-knative-values.yaml"))
    for pod in server_pods(docs):
        assert "terminationGracePeriodSeconds" not in pod["spec"]
        assert "lifecycle" not in server_container(pod["spec"])
        assert pod["spec"]["timeout"] == 120
        # the revision must be allowed to take as long as the startup probe allows
        deadline = int(pod["annotations"]["serving.knative.dev/progress-deadline"].rstrip("s"))
        startup = server_container(pod["spec"])["startupProbe"]
        assert deadline > startup["periodSeconds"] * startup["failureThreshold"]


def test_weights_sources(helm4: Helm) -> None:
    pods = {
        p["labels"]["vision-predictors.io/unit"]: p
        for p in server_pods(helm4.render(scenario("cpu-values.yaml")))
    }
    env = {k: env_of(server_container(p["spec"])) for k, p in pods.items()}
    assert env["general-recognition"]["STORAGE_URI"] == "s3://vision-models/general-recognition/v1"
    assert env["visual-entailment"]["STORAGE_URI"] == "pvc://vision-models/visual-entailment/v1"
    assert "STORAGE_URI" not in env["image-classification"]
    assert server_container(pods["image-classification"]["spec"])["args"][2] == (
        "image-classification=/opt/models/image-classification"
    )
    # deployment mode mounts the claim itself, read-only, where the server looks
    deploy = {
        d["metadata"]["name"]: d
        for d in by_kind(helm4.render(scenario("deployment-values.yaml")), "Deployment")
    }
    spec = deploy[f"{RELEASE}-general-recognition"]["spec"]["template"]["spec"]
    vol = next(v for v in spec["volumes"] if "persistentVolumeClaim" in v)
    assert vol["persistentVolumeClaim"] == {"claimName": "vision-models", "readOnly": True}
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == vol["name"])
    assert mount == {
        "name": vol["name"],
        "mountPath": "/mnt/models",
        "subPath": "general-recognition/v1",
        "readOnly": True,
    }


def test_settings_overrides_per_model(helm4: Helm) -> None:
    pods = {
        p["labels"]["vision-predictors.io/unit"]: p
        for p in server_pods(helm4.render(scenario("cpu-values.yaml")))
    }
    ve = env_of(server_container(pods["visual-entailment"]["spec"]))
    gr = env_of(server_container(pods["general-recognition"]["spec"]))
    assert (ve["PREDICTORS_MAX_BATCH_SIZE"], ve["PREDICTORS_MAX_LATENCY_MS"]) == ("4", "20")
    assert (gr["PREDICTORS_MAX_BATCH_SIZE"], gr["PREDICTORS_MAX_LATENCY_MS"]) == ("8", "5")
    assert gr["PREDICTORS_MAX_BODY_BYTES"] == "20971520"  # not 2.097152e+07
    # null drops the variable: the server default applies
    pods = server_pods(helm4.render(scenario("cpu-values.yaml"), sets=("settings.maxQueue=null",)))
    assert all("PREDICTORS_MAX_QUEUE" not in env_of(server_container(p["spec"])) for p in pods)


# --------------------------------------------------------------------------------------------
# GPU and CPU pools
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", SCENARIOS)
def test_gpu_limits_only_for_gpu_models(helm4: Helm, values: str) -> None:
    for pod in server_pods(helm4.render(scenario(values))):
        c = server_container(pod["spec"])
        device = pod["labels"]["vision-predictors.io/device"]
        limits = c["resources"]["limits"]
        tolerations = pod["spec"].get("tolerations", [])
        gpu_tolerated = any(t.get("key") == "nvidia.com/gpu" for t in tolerations)
        assert env_of(c)["PREDICTORS_DEVICE"] == device
        if device == "cuda":
            assert limits["nvidia.com/gpu"] >= 1
            assert gpu_tolerated
            assert pod["spec"]["nodeSelector"]["nvidia.com/gpu.present"] == "true"
        else:
            assert "nvidia.com/gpu" not in limits and "nvidia.com/gpu" not in c["resources"].get(
                "requests", {}
            )
            assert not gpu_tolerated
            assert "nvidia.com/gpu.present" not in pod["spec"].get("nodeSelector", {})
        for key in ("cpu", "memory"):
            assert key in limits and key in c["resources"]["requests"]


def test_gpu_pool_and_cpu_fallback_are_separate_services(helm4: Helm) -> None:
    docs = helm4.render(scenario("gpu-values.yaml"))
    isvcs = {i["metadata"]["name"]: i for i in by_kind(docs, "InferenceService")}
    assert {
        f"{RELEASE}-face-enhancement-gpu",
        f"{RELEASE}-face-enhancement-cpu",
        f"{RELEASE}-general-recognition-gpu",
    } == set(isvcs)
    gpu = server_container(isvcs[f"{RELEASE}-face-enhancement-gpu"]["spec"]["predictor"])
    cpu = server_container(isvcs[f"{RELEASE}-face-enhancement-cpu"]["spec"]["predictor"])
    assert gpu["args"] == cpu["args"] == ["serve", "--model-dir", "face-enhancement=/mnt/models"]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert (env_of(gpu)["PREDICTORS_MAX_BATCH_SIZE"], env_of(cpu)["PREDICTORS_MAX_BATCH_SIZE"]) == ("16", "2")
    # face enhancement preset: load peak ~3.2 GB on CPU fits under the limit
    assert cpu["resources"]["limits"]["memory"] == "6Gi"
    # a model-level affinity replaces the pool's
    gr = isvcs[f"{RELEASE}-general-recognition-gpu"]["spec"]["predictor"]
    terms = gr["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms[0]["matchExpressions"][0]["key"] == "nvidia.com/gpu.product"
    # ... and the CUDA driver requirement joins that term (terms are ORed, expressions ANDed)
    driver = {"key": "nvidia.com/cuda.driver-version.major", "operator": "Gt"}
    assert terms[0]["matchExpressions"][1] == {**driver, "values": ["534"]}  # cu12 build: driver >= 535
    fe = isvcs[f"{RELEASE}-face-enhancement-gpu"]["spec"]["predictor"]
    fe_terms = fe["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert fe_terms == [{"matchExpressions": [{**driver, "values": ["579"]}]}]  # cu13 build: driver >= 580
    assert "affinity" not in isvcs[f"{RELEASE}-face-enhancement-cpu"]["spec"]["predictor"]
    # CUDA builds by variant; CPU models keep the plain tag
    assert gpu["image"].endswith(":0.1.0-cu13") and cpu["image"].endswith(":0.1.0")
    assert server_container(gr)["image"].endswith(":0.1.0-cu12")
    # the allocator setting only where there is a GPU; BLAS threads from the CPU limit everywhere
    assert env_of(gpu)["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert "PYTORCH_CUDA_ALLOC_CONF" not in env_of(cpu)
    cpu_limit = {"resourceFieldRef": {"containerName": "kserve-container", "resource": "limits.cpu", "divisor": "1"}}
    for container in (gpu, cpu):
        assert env_of(container)["OMP_NUM_THREADS"] == env_of(container)["MKL_NUM_THREADS"] == cpu_limit
    # the GPU pool scales on its own queue (KEDA), found through the pool label the PodMonitor copies
    fe_pred = isvcs[f"{RELEASE}-face-enhancement-gpu"]["spec"]["predictor"]
    (queue,) = [m["external"] for m in fe_pred["autoScaling"]["metrics"]]
    assert queue["metric"]["query"] == (
        f'sum(predictors_queue_depth_items{{namespace="{NAMESPACE}",vision_predictors_io_unit="face-enhancement-gpu"}})'
    )
    (monitor,) = by_kind(docs, "PodMonitor")
    promql_labels = {re.sub(r"[^a-zA-Z0-9_]", "_", label) for label in monitor["spec"]["podTargetLabels"]}
    assert "vision_predictors_io_unit" in promql_labels
    assert fe_pred["labels"]["vision-predictors.io/unit"] == "face-enhancement-gpu"
    # GPU pods hold the CPU fallback copy of the model on top of the CPU load peak
    assert gpu["resources"]["limits"]["memory"] == "9Gi"
    # digests: each CUDA build has its own; image.digest pins the plain tag (CPU models)
    cu13, plain = "sha256:" + "3" * 64, "sha256:" + "4" * 64
    docs = helm4.render(
        scenario("gpu-values.yaml"), sets=(f"cuda.variants.cu13.digest={cu13}", f"image.digest={plain}")
    )
    images = {
        i["metadata"]["name"]: server_container(i["spec"]["predictor"])["image"]
        for i in by_kind(docs, "InferenceService")
    }
    assert images[f"{RELEASE}-face-enhancement-gpu"].endswith(f":0.1.0-cu13@{cu13}")
    assert images[f"{RELEASE}-face-enhancement-cpu"].endswith(f":0.1.0@{plain}")
    assert images[f"{RELEASE}-general-recognition-gpu"].endswith(":0.1.0-cu12")  # no cu12 digest given
    # no driver affinity when switched off
    docs = helm4.render(scenario("gpu-values.yaml"), sets=("cuda.driverAffinity=false",))
    isvcs = {i["metadata"]["name"]: i for i in by_kind(docs, "InferenceService")}
    assert "affinity" not in isvcs[f"{RELEASE}-face-enhancement-gpu"]["spec"]["predictor"]


NATIVE_BF16_LABELS = ("feature.node.kubernetes.io/cpu-cpuid.AVX512BF16", "feature.node.kubernetes.io/cpu-cpuid.AMXBF16")


def required_terms(pod_spec: dict[str, Any]) -> list[dict[str, Any]] | None:
    affinity = pod_spec.get("affinity")
    if affinity is None:
        return None
    return affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


def native_bf16_term(label: str, *expressions: dict[str, Any]) -> dict[str, Any]:
    return {"matchExpressions": [*expressions, {"key": label, "operator": "In", "values": ["true"]}]}


def test_bf16_cpu_pools_require_nodes_with_native_bf16(helm4: Helm) -> None:
    docs = helm4.render(scenario("cpu-values.yaml"))
    predictors = {i["metadata"]["name"]: i["spec"]["predictor"] for i in by_kind(docs, "InferenceService")}
    # visual-entailment asks for bf16: one term per label (ORed); the fp32 pools keep no affinity
    assert required_terms(predictors[f"{RELEASE}-visual-entailment"]) == [
        native_bf16_term(label) for label in NATIVE_BF16_LABELS]
    assert required_terms(predictors[f"{RELEASE}-general-recognition"]) is None
    # a term of the model's own is kept in each copy, ANDed with the label
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
    docs = helm4.render(scenario("cpu-values.yaml"), sets=(
        "models.visual-entailment.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].key=topology.kubernetes.io/zone",
        "models.visual-entailment.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].operator=In",
        "models.visual-entailment.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].values[0]=a",
    ))
    predictors = {i["metadata"]["name"]: i["spec"]["predictor"] for i in by_kind(docs, "InferenceService")}
    assert required_terms(predictors[f"{RELEASE}-visual-entailment"]) == [
        native_bf16_term(label, zone) for label in NATIVE_BF16_LABELS]
    # switched off: no requirement
    docs = helm4.render(scenario("cpu-values.yaml"), sets=("bf16NodeAffinity=false",))
    assert all("affinity" not in i["spec"]["predictor"] for i in by_kind(docs, "InferenceService"))
    # GPU pools in bf16: the GPU decides (their driver term only), not the node's CPU; the CPU pool beside
    # them requires native bf16
    docs = helm4.render(scenario("gpu-values.yaml"), sets=("settings.precision=bf16",))
    for pod in server_pods(docs):
        keys = {e["key"] for term in required_terms(pod["spec"]) or [] for e in term["matchExpressions"]}
        on_gpu = "nvidia.com/gpu" in server_container(pod["spec"])["resources"]["limits"]
        assert bool(keys & set(NATIVE_BF16_LABELS)) is not on_gpu, pod["owner"]["metadata"]["name"]
    # a canary in bf16 beside a stable fp32 predictor: only the canary's pods require it
    (isvc,) = by_kind(helm4.render(scenario("canary-standard-values.yaml"),
                                   sets=("models.general-recognition.canary.settings.precision=bf16",)),
                      "InferenceService")
    assert required_terms(isvc["spec"]["predictor"]) is None
    assert required_terms(isvc["spec"]["canary"][0]["predictor"]) == [
        native_bf16_term(label) for label in NATIVE_BF16_LABELS]
    # deployment mode: the same on the Deployment's pods
    docs = helm4.render(scenario("deployment-values.yaml"), sets=("settings.precision=bf16",))
    pods = server_pods(docs)
    assert pods and all(required_terms(pod["spec"]) == [native_bf16_term(label) for label in NATIVE_BF16_LABELS]
                        for pod in pods)


# --------------------------------------------------------------------------------------------
# selectors match the pods they are meant for, and only those
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", SCENARIOS)
def test_selectors_match_pods(helm4: Helm, values: str) -> None:
    docs = helm4.render(scenario(values))
    pods = server_pods(docs)
    assert pods
    units = {p["labels"]["vision-predictors.io/unit"] for p in pods}

    def matched(selector: dict[str, Any]) -> set[str]:
        return {p["labels"]["vision-predictors.io/unit"] for p in pods if selects(selector, p["labels"])}

    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert len(pdbs) == len(units)
    for pdb in pdbs:
        unit = pdb["metadata"]["labels"]["vision-predictors.io/unit"]
        assert matched(pdb["spec"]["selector"]) == {unit}
        # stable and canary pods of the unit are both covered
        assert all(
            selects(pdb["spec"]["selector"], p["labels"])
            for p in pods
            if p["labels"]["vision-predictors.io/unit"] == unit
        )

    np = release_policy(docs)
    assert matched(np["spec"]["podSelector"]) == units
    tester = helm_test_pod(docs)
    assert not selects(np["spec"]["podSelector"], tester["metadata"]["labels"])
    # the test pod is allowed in by the policy
    peers = [peer for rule in np["spec"]["ingress"] for peer in rule["from"]]
    assert any(
        "podSelector" in peer
        and "namespaceSelector" not in peer
        and selects(peer["podSelector"], tester["metadata"]["labels"])
        for peer in peers
    )
    # ... and has its own policy (hook) that lets it out to the servers only
    (test_np,) = [d for d in by_kind(docs, "NetworkPolicy") if is_test_hook(d)]
    assert selects(test_np["spec"]["podSelector"], tester["metadata"]["labels"])
    assert matched(test_np["spec"]["podSelector"]) == set()
    assert "ingress" not in test_np["spec"] and "Ingress" in test_np["spec"]["policyTypes"]
    out_peers = [peer for rule in test_np["spec"]["egress"] for peer in rule["to"]]
    assert any(
        "namespaceSelector" not in peer and matched(peer.get("podSelector", {})) == units
        for peer in out_peers
    )

    for d in by_kind(docs, "Deployment"):
        assert selects(d["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        assert matched(d["spec"]["selector"]) == {d["metadata"]["labels"]["vision-predictors.io/unit"]}
    for svc in by_kind(docs, "Service"):
        unit = svc["metadata"]["labels"]["vision-predictors.io/unit"]
        assert matched({"matchLabels": svc["spec"]["selector"]}) == {unit}
        pod = next(p for p in pods if p["labels"]["vision-predictors.io/unit"] == unit)
        port_names = {p["name"] for p in server_container(pod["spec"])["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
    deployments = {d["metadata"]["name"] for d in by_kind(docs, "Deployment")}
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment") and ref["name"] in deployments
    for mon in [d for d in docs if d["kind"] in OPERATOR_KINDS]:
        assert matched(mon["spec"]["selector"]) == units
        assert mon["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
        if mon["kind"] == "ServiceMonitor":
            for svc in by_kind(docs, "Service"):
                assert selects(mon["spec"]["selector"], svc["metadata"]["labels"])
                assert mon["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
        else:
            port = mon["spec"]["podMetricsEndpoints"][0]["port"]
            assert all(port in {p["name"] for p in server_container(p["spec"])["ports"]} for p in pods)


def test_topology_spread_selects_its_own_pool(helm4: Helm) -> None:
    pods = server_pods(helm4.render(scenario("gpu-values.yaml")))
    for pod in pods:
        for constraint in pod["spec"]["topologySpreadConstraints"]:
            same = {
                p["labels"]["vision-predictors.io/unit"]
                for p in pods
                if selects(constraint["labelSelector"], p["labels"])
            }
            assert same == {pod["labels"]["vision-predictors.io/unit"]}


# --------------------------------------------------------------------------------------------
# autoscaling and canary render where KServe / Kubernetes read them
# --------------------------------------------------------------------------------------------
def test_standard_mode_hpa_fields(helm4: Helm) -> None:
    docs = helm4.render(scenario("cpu-values.yaml"))
    for isvc in by_kind(docs, "InferenceService"):
        ann = isvc["metadata"]["annotations"]
        assert ann["serving.kserve.io/deploymentMode"] == "Standard"
        assert ann["serving.kserve.io/autoscalerClass"] == "hpa"
        pred = isvc["spec"]["predictor"]
        assert (pred["scaleMetric"], pred["scaleTarget"]) == ("cpu", 70)
        assert pred["deploymentStrategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
        assert "canary" not in isvc["spec"] and "canaryTrafficPercent" not in pred
    ic = next(
        i
        for i in by_kind(docs, "InferenceService")
        if i["metadata"]["name"] == f"{RELEASE}-image-classification"
    )
    assert (ic["spec"]["predictor"]["minReplicas"], ic["spec"]["predictor"]["maxReplicas"]) == (2, 4)


def test_keda_scales_on_the_prometheus_query(helm4: Helm) -> None:
    (isvc,) = by_kind(helm4.render(scenario("keda-values.yaml")), "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
    pred = isvc["spec"]["predictor"]
    assert "scaleMetric" not in pred and "scaleTarget" not in pred
    assert (pred["minReplicas"], pred["maxReplicas"]) == (1, 10)
    metrics = pred["autoScaling"]["metrics"]
    ext = next(m["external"] for m in metrics if m["type"] == "External")
    assert ext["metric"]["backend"] == "prometheus"
    assert (
        ext["metric"]["query"]
        == f'sum(predictors_queue_depth_items{{namespace="{NAMESPACE}",model="general-recognition"}})'
    )
    assert ext["target"] == {"type": "Value", "value": "16"}
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics)


def test_deployment_mode_hpa(helm4: Helm) -> None:
    docs = helm4.render(scenario("deployment-values.yaml"))
    assert not by_kind(docs, "InferenceService")
    hpas = {h["metadata"]["name"]: h for h in by_kind(docs, "HorizontalPodAutoscaler")}
    deploys = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    # min == max: no HPA, fixed replicas; otherwise the HPA owns the replica count
    assert set(hpas) == {f"{RELEASE}-general-recognition"}
    assert deploys[f"{RELEASE}-face-enhancement"]["spec"]["replicas"] == 2
    assert "replicas" not in deploys[f"{RELEASE}-general-recognition"]["spec"]
    # a slow load is not ProgressDeadlineExceeded while the startup probe (10 s x 90) still waits
    assert {d["spec"]["progressDeadlineSeconds"] for d in deploys.values()} == {10 * 90 + 300}
    metrics = hpas[f"{RELEASE}-general-recognition"]["spec"]["metrics"]
    assert metrics[0] == {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
    }
    assert (
        metrics[1]["type"] == "Pods"
        and metrics[1]["pods"]["metric"]["name"] == "predictors_queue_depth_items"
    )


def test_canary_standard_mode(helm4: Helm) -> None:
    (isvc,) = by_kind(helm4.render(scenario("canary-standard-values.yaml")), "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    stable = isvc["spec"]["predictor"]
    assert "canaryTrafficPercent" not in stable
    (canary,) = isvc["spec"]["canary"]
    assert canary["trafficPercent"] == 10
    s, c = server_container(stable), server_container(canary["predictor"])
    assert s["image"].endswith(":0.1.0") and c["image"].endswith(":0.2.0")
    assert env_of(s)["STORAGE_URI"].endswith("/v1") and env_of(c)["STORAGE_URI"].endswith("/v2")
    assert stable["labels"]["vision-predictors.io/track"] == "stable"
    assert canary["predictor"]["labels"]["vision-predictors.io/track"] == "canary"
    # promotion = new version in the stable values, canary off: one predictor, no split
    (promoted,) = by_kind(
        helm4.render(
            scenario("canary-standard-values.yaml"),
            sets=(
                "image.tag=0.2.0",
                "models.general-recognition.weights.storageUri=s3://vision-models/general-recognition/v2",
                "models.general-recognition.canary.enabled=false",
            ),
        ),
        "InferenceService",
    )
    assert "canary" not in promoted["spec"]
    assert server_container(promoted["spec"]["predictor"])["image"].endswith(":0.2.0")


def test_canary_knative_mode(helm4: Helm) -> None:
    docs = helm4.render(scenario("canary-knative-values.yaml"))
    isvcs = {i["metadata"]["name"]: i for i in by_kind(docs, "InferenceService")}
    gr = isvcs[f"{RELEASE}-general-recognition"]
    assert gr["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert "serving.kserve.io/autoscalerClass" not in gr["metadata"]["annotations"]
    assert "canary" not in gr["spec"]
    pred = gr["spec"]["predictor"]
    assert pred["canaryTrafficPercent"] == 10
    # the predictor spec is the new revision
    assert server_container(pred)["image"].endswith(":0.2.0")
    assert (pred["scaleMetric"], pred["scaleTarget"]) == ("concurrency", 8)
    ve = isvcs[f"{RELEASE}-visual-entailment"]["spec"]["predictor"]
    assert "canaryTrafficPercent" not in ve and ve["minReplicas"] == 0
    # KServe copies InferenceService labels to pods: none may change with the chart version
    for isvc in isvcs.values():
        assert not {"helm.sh/chart", "app.kubernetes.io/version"} & isvc["metadata"]["labels"].keys()
    # Knative pods carry no track label: promotion must leave the revision template untouched
    assert "vision-predictors.io/track" not in pred["labels"]
    promoted = next(
        i
        for i in by_kind(
            helm4.render(
                scenario("canary-knative-values.yaml"),
                sets=("image.tag=0.2.0", "models.general-recognition.canary.enabled=false"),
            ),
            "InferenceService",
        )
        if i["metadata"]["name"] == f"{RELEASE}-general-recognition"
    )
    before = dict(pred)
    assert before.pop("canaryTrafficPercent") == 10
    assert promoted["spec"]["predictor"] == before, "promotion would start a new Knative revision"
    # rollback step 1: pin all traffic to the previous revision
    docs = helm4.render(
        scenario("canary-knative-values.yaml"), sets=("models.general-recognition.canary.trafficPercent=0",)
    )
    gr = next(
        i
        for i in by_kind(docs, "InferenceService")
        if i["metadata"]["name"] == f"{RELEASE}-general-recognition"
    )
    assert gr["spec"]["predictor"]["canaryTrafficPercent"] == 0


# --------------------------------------------------------------------------------------------
# security, OpenTelemetry, network policy, helm test
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", SCENARIOS)
def test_pods_meet_restricted_pod_security(helm4: Helm, values: str) -> None:
    docs = helm4.render(scenario(values))
    specs = [(p["spec"], p["spec"]["containers"]) for p in server_pods(docs)]
    specs += [(helm_test_pod(docs)["spec"], helm_test_pod(docs)["spec"]["containers"])]
    for pod, containers in specs:
        assert pod["automountServiceAccountToken"] is False
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault"
        for c in containers:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc.get("runAsNonRoot", psc["runAsNonRoot"]) is True
    for pod in server_pods(docs):
        psc = pod["spec"]["securityContext"]
        assert (psc["runAsUser"], psc["runAsGroup"]) == (1001, 1001)  # image contract
        c = server_container(pod["spec"])
        tmp = next(v for v in pod["spec"]["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
        env = env_of(c)
        for name, path in {
            "TMPDIR": "/tmp",
            "HOME": "/tmp",
            "MODELSCOPE_CACHE": "/tmp/modelscope",
            "TORCH_HOME": "/tmp/torch",
        }.items():
            assert env[name] == path
    for sa in by_kind(docs, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


def test_opentelemetry_env(helm4: Helm) -> None:
    pods = server_pods(helm4.render(scenario("cpu-values.yaml")))
    for pod in pods:
        env_list = server_container(pod["spec"])["env"]
        names = [e["name"] for e in env_list]
        env = env_of(server_container(pod["spec"]))
        attrs = dict(kv.split("=", 1) for kv in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
        # $(VAR) references only expand for variables defined earlier in the list
        for attr, var, field in (
            ("k8s.pod.name", "K8S_POD_NAME", "metadata.name"),
            ("k8s.namespace.name", "K8S_NAMESPACE_NAME", "metadata.namespace"),
            ("k8s.node.name", "K8S_NODE_NAME", "spec.nodeName"),
        ):
            assert attrs[attr] == f"$({var})"
            assert env[var] == {"fieldRef": {"fieldPath": field}}
            assert names.index(var) < names.index("OTEL_RESOURCE_ATTRIBUTES")
        assert attrs["deployment.environment"] == "staging"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://")
        assert env["OTEL_SERVICE_NAME"] == pod["owner"]["metadata"]["name"]
    # off by default: no OTEL_* at all
    pods = server_pods(
        helm4.render(sets=("models.gr.predictor=general-recognition", "models.gr.weights.path=/m"))
    )
    assert not [n for n in env_of(server_container(pods[0]["spec"])) if n.startswith("OTEL_")]
    # operator sidecar annotation
    pods = server_pods(
        helm4.render(scenario("cpu-values.yaml"), sets=("otel.operatorSidecarInject=my-collector",))
    )
    assert all(p["annotations"]["sidecar.opentelemetry.io/inject"] == "my-collector" for p in pods)


def test_network_policy_egress(helm4: Helm) -> None:
    def egress(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        np = release_policy(docs)
        assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        return np["spec"]["egress"]

    rules = egress(helm4.render(scenario("cpu-values.yaml")))
    ports = [{(p["port"], p["protocol"]) for p in r["ports"]} for r in rules]
    assert {(53, "UDP"), (53, "TCP")} in ports  # DNS
    assert {(4317, "TCP"), (4318, "TCP")} in ports  # OTLP (otel.enabled)
    assert {(443, "TCP")} in ports  # storage initializer (s3:// weights)
    # image-baked / PVC weights only: no storage egress; no OTel: no collector egress
    rules = egress(helm4.render(scenario("deployment-values.yaml"), sets=("otel.enabled=false",)))
    assert [{(p["port"], p["protocol"]) for p in r["ports"]} for r in rules] == [{(53, "UDP"), (53, "TCP")}]
    # Knative: the queue-proxy ports are reachable, gRPC is not exposed
    np = release_policy(helm4.render(scenario("canary-knative-values.yaml")))
    in_ports = {p["port"] for r in np["spec"]["ingress"] for p in r["ports"]}
    assert in_ports == {HTTP_PORT, 8012, 8013, 9091}


@pytest.mark.parametrize("values", SCENARIOS)
def test_helm_test_hook_calls_every_ready_endpoint(helm4: Helm, values: str) -> None:
    docs = helm4.render(scenario(values))
    script = helm_test_pod(docs)["spec"]["containers"][0]["args"][0]
    urls = re.findall(r'curl [^"]*"([^"]+)"', script)
    expected = set()
    for pod in server_pods(docs):
        if pod["track"] != "stable":
            continue
        name, model = pod["owner"]["metadata"]["name"], pod["labels"]["vision-predictors.io/model"]
        if pod["owner"]["kind"] == "InferenceService":
            # KServe's predictor Service (and Deployment): <isvc>-predictor, port 80
            url, deployment = f"http://{name}-predictor.{NAMESPACE}.svc/v2/models/{model}/ready", f"{name}-predictor"
        else:
            svc = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == name)
            port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "http")
            url, deployment = f"http://{name}.{NAMESPACE}.svc:{port}/v2/models/{model}/ready", name
        if f'echo "skipped {url} ' in script:
            # a pool KEDA scales to zero on its jobs backlog: nothing may answer (no Knative activator)
            (so,) = [s for s in by_kind(docs, "ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == deployment]
            assert so["spec"]["minReplicaCount"] == 0
            continue
        expected.add(url)
    assert set(urls) == expected and len(urls) == len(expected)
    assert "--fail" in script


def test_checkov_skips_are_justified() -> None:
    skips = re.findall(r"^# checkov:skip=(CKV\w+):(.*)$", (CHART / "values.yaml").read_text(), flags=re.M)
    assert skips, "ci/chart-check.sh reads its skip list from values.yaml"
    for check, reason in skips:
        assert len(reason.strip()) > 40, f"{check} needs a real justification"


@pytest.mark.parametrize(
    "values", ["canary-standard-values.yaml", "deployment-values.yaml", "gpu-values.yaml"]
)
def test_notes_tell_how_to_call_each_model(helm4: Helm, values: str) -> None:
    # Helm 4 renders NOTES offline with a client-side dry run (Helm 3 insists on a cluster).
    proc = helm4.run(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", "-f", scenario(values)
    )
    notes = proc.stdout.split("NOTES:", 1)[1]
    docs = helm4.render(scenario(values))
    for pod in server_pods(docs):
        if pod["track"] != "stable":
            continue
        name, model = pod["owner"]["metadata"]["name"], pod["labels"]["vision-predictors.io/model"]
        if pod["owner"]["kind"] == "InferenceService":
            assert f"URL=http://{name}-predictor.{NAMESPACE}.svc\n" in notes
        else:
            assert f"port-forward service/{name} {HTTP_PORT}:{HTTP_PORT}" in notes
        assert f'"$URL/v2/models/{model}/ready"' in notes and f'"$URL/v2/models/{model}/infer"' in notes
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes


def test_notes_without_models(helm4: Helm) -> None:
    proc = helm4.run("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    assert "No model is enabled" in proc.stdout.split("NOTES:", 1)[1]


def test_autoscaling_metrics_exist_in_the_server() -> None:
    """The queue-depth metric the chart scales on (KEDA query, HPA custom metric) exists in the server."""
    import prometheus_client

    from predictors.telemetry.metrics import Metrics

    registry = prometheus_client.CollectorRegistry()
    Metrics(registry)
    exported = {m.name for m in registry.collect()} | {s.name for m in registry.collect() for s in m.samples}
    values = yaml.safe_load((CHART / "values.yaml").read_text())["autoscaling"]
    assert values["customMetric"]["name"] in exported
    (metric,) = re.findall(r"^\w+\(?(\w+)\{", values["keda"]["query"])
    assert metric in exported
    for name in ("keda-values.yaml", "deployment-values.yaml"):
        text = Path(scenario(name)).read_text()
        assert "predictors_queue_depth_items" in text
