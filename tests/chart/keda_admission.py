"""KEDA's rules for the ScaledObjects and TriggerAuthentications this chart renders (and the ones KServe
builds), in Python.

A fast check that needs no Go build. KEDA's CRDs accept objects that KEDA's admission webhook or its
scalers then refuse, or worse, silently read otherwise (a redis-streams trigger without lagCount scales
on pending entries). Each rule mirrors a piece of KEDA's Go source at KEDA_VERSION (KEDA_COMMIT) and
cites the file it mirrors. A rule returns the messages KEDA would give, [] when it accepts the object.
KEDA's own webhooks decide (tests/keda, the same version): tests/chart/test_jobs.py shows `webhook_errors`
agreeing with them on every scenario and crafted bad copy. The scalers' parameter rules
(`rule_scaler_metadata`) have no real counterpart in the tests: KEDA keeps every scaler with its cloud SDK
in one package (pkg/scalers), which the harness does not build.
"""

from __future__ import annotations

from typing import Any

KEDA_VERSION = "v2.20.2"
KEDA_COMMIT = "68a5b5028f35b22d50597c69819ab32c4e92f21a"
WEBHOOK = "apis/keda/v1alpha1/scaledobject_webhook.go"

Obj = dict[str, Any]

LABEL_VALUE_MAX = 63  # maxK8sLabelValueLength
DEFAULT_MAX_REPLICAS = 100  # defaultHPAMaxReplicas
TRANSFER_HPA_OWNERSHIP = "scaledobject.keda.sh/transfer-hpa-ownership"
HPA_OWNERSHIP_VALIDATION = "validations.keda.sh/hpa-ownership"


# ------------------------------------------------------------------------------------- structure
def _strict(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_HPA_RULES = _strict(
    {
        "policies": {
            "type": "array",
            "items": _strict(
                {"type": {"type": "string"}, "value": _INT32, "periodSeconds": _INT32},
                ("periodSeconds", "type", "value"),
            ),
        },
        "selectPolicy": {"type": "string"},
        "stabilizationWindowSeconds": _INT32,
        "tolerance": {"type": ["integer", "string"]},
    }
)
_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name"],
    "additionalProperties": False,
}

#: spec of config/crd/bases/keda.sh_scaledobjects.yaml @ KEDA_COMMIT, made strict (additionalProperties:
#: false), with its x-kubernetes-validations rule (min <= max) checked in rule_replica_bounds.
SCALED_OBJECT_SCHEMA = _strict(
    {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _METADATA,
        "spec": _strict(
            {
                "scaleTargetRef": _strict(
                    {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string", "minLength": 1},
                        "envSourceContainerName": {"type": "string"},
                    },
                    ("name",),
                ),
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "fallback": _strict(
                    {
                        "failureThreshold": {"type": "integer", "minimum": 0},
                        "replicas": {"type": "integer", "minimum": 0},
                        "behavior": {
                            "enum": [
                                "static",
                                "currentReplicas",
                                "currentReplicasIfHigher",
                                "currentReplicasIfLower",
                                "scalingModifiers",
                            ]
                        },
                    },
                    ("failureThreshold", "replicas"),
                ),
                "advanced": _strict(
                    {
                        "horizontalPodAutoscalerConfig": _strict(
                            {
                                "name": {"type": "string"},
                                "behavior": _strict({"scaleDown": _HPA_RULES, "scaleUp": _HPA_RULES}),
                            }
                        ),
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "scalingModifiers": {"type": "object"},
                    }
                ),
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": _strict(
                        {
                            "type": {"type": "string", "minLength": 1},
                            "name": {"type": "string"},
                            "useCachedMetrics": {"type": "boolean"},
                            # map[string]string: a YAML number here is refused by the API server
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": _strict(
                                {
                                    "name": {"type": "string"},
                                    "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                                },
                                ("name",),
                            ),
                            "metricType": {"type": "string"},
                        },
                        ("metadata", "type"),
                    ),
                },
            },
            ("scaleTargetRef", "triggers"),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

#: The part of config/crd/bases/keda.sh_triggerauthentications.yaml @ KEDA_COMMIT the chart uses.
TRIGGER_AUTHENTICATION_SCHEMA = _strict(
    {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": _METADATA,
        "spec": _strict(
            {
                "secretTargetRef": {
                    "type": "array",
                    "items": _strict(
                        {"parameter": {"type": "string"}, "name": {"type": "string"}, "key": {"type": "string"}},
                        ("key", "name", "parameter"),
                    ),
                },
                "env": {
                    "type": "array",
                    "items": _strict(
                        {
                            "parameter": {"type": "string"},
                            "name": {"type": "string"},
                            "containerName": {"type": "string"},
                        },
                        ("name", "parameter"),
                    ),
                },
            }
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)


def structure_errors(doc: Obj) -> list[str]:
    import jsonschema

    schema = {"ScaledObject": SCALED_OBJECT_SCHEMA, "TriggerAuthentication": TRIGGER_AUTHENTICATION_SCHEMA}[doc["kind"]]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


# ------------------------------------------------------------------------------------- webhook
def hpa_name(so: Obj) -> str:
    """getHpaName: advanced.horizontalPodAutoscalerConfig.name, else keda-hpa-<name>. Mirrors WEBHOOK."""
    config = (so["spec"].get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}
    return config.get("name") or f"keda-hpa-{so['metadata']['name']}"


def rule_name(so: Obj) -> list[str]:
    """verifyName: the ScaledObject name is a label value (scaledobject.keda.sh/name), and so is the HPA
    name derived from it (KEDA >= 2.20). Mirrors WEBHOOK @ KEDA_COMMIT."""
    errors = []
    if len(so["metadata"]["name"]) > LABEL_VALUE_MAX:
        errors.append(f"scaledobject name {so['metadata']['name']!r} is longer than {LABEL_VALUE_MAX}")
    if len(hpa_name(so)) > LABEL_VALUE_MAX:
        errors.append(f"HPA name {hpa_name(so)!r} derived from scaledobject is longer than {LABEL_VALUE_MAX}")
    return errors


def rule_replica_bounds(so: Obj) -> list[str]:
    """CheckReplicaCountBoundsAreValid (apis/keda/v1alpha1/scaledobject_types.go) and the CRD's
    x-kubernetes-validations: min (0 counts as 1 for the HPA) <= max (default 100); idle < min."""
    spec = so["spec"]
    low = spec.get("minReplicaCount", 0)
    high = spec.get("maxReplicaCount", DEFAULT_MAX_REPLICAS)
    errors = []
    if max(low, 1) > high:  # GetHPAMinReplicas: 0 means 1 for the HPA
        errors.append(f"MinReplicaCount={low} must be less than MaxReplicaCount={high}")
    if "idleReplicaCount" in spec and spec["idleReplicaCount"] >= max(low, 1):
        errors.append("IdleReplicaCount must be less than MinReplicaCount")
    return errors


def rule_triggers(so: Obj) -> list[str]:
    """ValidateTriggers (apis/keda/v1alpha1/scaletriggers_types.go): at least one trigger, unique
    names, no useCachedMetrics on cpu/memory/cron."""
    triggers = so["spec"].get("triggers") or []
    if not triggers:
        return ["no triggers defined in the ScaledObject/ScaledJob"]
    errors, names = [], set()
    for t in triggers:
        if t.get("useCachedMetrics") and t["type"] in {"cpu", "memory", "cron"}:
            errors.append(f"property useCachedMetrics is not supported for {t['type']!r} scaler")
        if t.get("name"):
            if t["name"] in names:
                errors.append(f"triggerName {t['name']!r} is defined multiple times")
            names.add(t["name"])
    return errors


def rule_cpu_memory(so: Obj, pod_spec: Obj) -> list[str]:
    """verifyCPUMemoryScalers: a cpu/memory trigger needs that resource's request (or limit) on every
    container it measures (containerName, else all containers; no LimitRange defaults assumed), and a
    ScaledObject with only cpu/memory triggers cannot have minReplicaCount 0. `pod_spec`: the target
    Deployment's pod template spec. Mirrors WEBHOOK @ KEDA_COMMIT."""
    triggers = so["spec"]["triggers"]
    resource_triggers = [t for t in triggers if t["type"] in {"cpu", "memory"}]
    errors = []
    for t in resource_triggers:
        name = (t.get("metadata") or {}).get("containerName", "")
        for c in pod_spec.get("containers") or []:
            if name and c.get("name") != name:
                continue
            res = c.get("resources") or {}
            if not ((res.get("requests") or {}).get(t["type"]) or (res.get("limits") or {}).get(t["type"])):
                errors.append(
                    f"the scaledobject has a {t['type']} trigger but the container {c.get('name')} "
                    f"doesn't have the {t['type']} request defined"
                )
    if resource_triggers and len(resource_triggers) == len(triggers) and so["spec"].get("minReplicaCount", 0) == 0:
        errors.append("scaledobject has only cpu/memory triggers AND minReplica is 0")
    return errors


def rule_one_autoscaler_per_target(so: Obj, scaled_objects: list[Obj], hpas: list[Obj]) -> list[str]:
    """verifyScaledObjects + verifyHpas: no other ScaledObject in the namespace targets the same workload
    or claims the same HPA name; no HPA KEDA does not own targets it, unless the ScaledObject carries
    the transfer-hpa-ownership annotation and names that HPA. `scaled_objects`/`hpas`: the namespace's
    other objects. Mirrors WEBHOOK @ KEDA_COMMIT."""
    target = _target(so)
    errors = []
    for other in scaled_objects:
        if other["metadata"]["name"] == so["metadata"]["name"]:
            continue
        if _target(other) == target:
            errors.append(
                f"the workload {target[1]!r} is already managed by the ScaledObject {other['metadata']['name']!r}"
            )
        if hpa_name(other) == hpa_name(so):
            errors.append(
                f"the HPA {hpa_name(so)!r} is already managed by the ScaledObject {other['metadata']['name']!r}"
            )
    for hpa in hpas:
        meta = hpa["metadata"]
        if (meta.get("annotations") or {}).get(HPA_OWNERSHIP_VALIDATION) == "false":
            continue
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref.get("kind", "Deployment"), ref["name"]) != target:
            continue
        owned = any(
            o.get("kind") == "ScaledObject" and o.get("name") == so["metadata"]["name"]
            for o in meta.get("ownerReferences") or []
        )
        if owned:
            continue
        transfer = (so["metadata"].get("annotations") or {}).get(TRANSFER_HPA_OWNERSHIP) == "true"
        if not (transfer and hpa_name(so) == meta["name"]):
            errors.append(f"the workload {target[1]!r} is already managed by the hpa {meta['name']!r}")
    return errors


def warnings(so: Obj) -> list[str]:
    """verifyScaledObjects' warnings: pollingInterval and cooldownPeriod only matter when the object can
    scale to zero (minReplicaCount 0 or idleReplicaCount 0). Mirrors WEBHOOK @ KEDA_COMMIT."""
    spec = so["spec"]
    can_idle = spec.get("minReplicaCount", 0) == 0 or spec.get("idleReplicaCount") == 0
    return [
        f"{field} is configured but is not relevant"
        for field in ("pollingInterval", "cooldownPeriod")
        if field in spec and not can_idle
    ]


def _target(so: Obj) -> tuple[str, str]:
    ref = so["spec"]["scaleTargetRef"]
    return ref.get("kind", "Deployment"), ref["name"]


# ------------------------------------------------------------------------------------- scalers
#: Parameter names each scaler reads (its typed-config struct tags): pkg/scalers/redis_streams_scaler.go,
#: redis_scaler.go (redisConnectionInfo), cpu_memory_scaler.go, prometheus_scaler.go @ KEDA_COMMIT.
_REDIS_CONNECTION = {
    "address",
    "addresses",
    "username",
    "password",
    "sentinelUsername",
    "sentinelPassword",
    "sentinelMaster",
    "host",
    "hosts",
    "port",
    "ports",
    "unsafeSsl",
}
KNOWN_METADATA = {
    "redis-streams": {
        "pendingEntriesCount",
        "streamLength",
        "lagCount",
        "stream",
        "consumerGroup",
        "databaseIndex",
        "activationLagCount",
        "enableTLS",
    }
    | _REDIS_CONNECTION
    | {f"{p}FromEnv" for p in _REDIS_CONNECTION},
    "cpu": {"value", "containerName"},
    "memory": {"value", "containerName"},
    "prometheus": {
        "serverAddress",
        "query",
        "queryParameters",
        "threshold",
        "activationThreshold",
        "namespace",
        "customHeaders",
        "ignoreNullValues",
        "unsafeSsl",
        "awsRegion",
        "timeout",
        "identityOwner",
        "authModes",
    },
}


def redis_streams(metadata: dict[str, str], auth_params: dict[str, str] | None = None) -> tuple[Obj, list[str]]:
    """parseRedisStreamsMetadata + redisStreamsMetadata.Validate + SetEnableTLS: what KEDA reads from a
    redis-streams trigger (metadata first, then the TriggerAuthentication's parameters), and its errors.
    The scale factor: with consumerGroup, `lag` when lagCount is non-zero, else `pending` (XPENDING,
    pendingEntriesCount default 5); without a group `xlen`. Mirrors pkg/scalers/redis_streams_scaler.go
    and redis_scaler.go @ KEDA_COMMIT."""
    auth = auth_params or {}
    errors: list[str] = []

    def integer(name: str, default: int) -> int:
        raw = metadata.get(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            errors.append(f"{name}: {raw!r} is not an integer")
            return default

    parsed: Obj = {
        "stream": metadata.get("stream", ""),
        "consumerGroup": metadata.get("consumerGroup", ""),
        "lagCount": integer("lagCount", 0),
        "activationLagCount": integer("activationLagCount", 0),
        "databaseIndex": integer("databaseIndex", 0),
        "address": metadata.get("address") or auth.get("address") or "",
        "username": metadata.get("username") or auth.get("username") or "",
        "password": metadata.get("password") or auth.get("password") or "",
        "tls": False,
    }
    if not parsed["address"] and metadata.get("host") and metadata.get("port"):
        parsed["address"] = f"{metadata['host']}:{metadata['port']}"
    if not parsed["address"]:
        errors.append("no addresses or hosts given")
    if "enableTLS" in metadata and "tls" in auth:
        errors.append("unable to set `tls` in both ScaledObject and TriggerAuthentication together")
    elif "enableTLS" in metadata:
        if metadata["enableTLS"].lower() not in {"1", "t", "true", "0", "f", "false"}:
            errors.append(f"EnableTLS parsing error {metadata['enableTLS']!r}")
        parsed["tls"] = metadata["enableTLS"].lower() in {"1", "t", "true"}
    elif "tls" in auth:
        if auth["tls"] not in {"enable", "disable"}:
            errors.append(f"error incorrect TLS value given, got {auth['tls']}")
        parsed["tls"] = auth["tls"] == "enable"
    if not parsed["stream"]:
        errors.append("missing redis stream name")
    if parsed["consumerGroup"]:
        parsed["scaleFactor"] = "lag" if parsed["lagCount"] != 0 else "pending"
    else:
        parsed["scaleFactor"] = "xlen"
    return parsed, errors


def rule_scaler_metadata(so: Obj) -> list[str]:
    """Each trigger's metadata parses as its scaler does: integers and booleans, required parameters,
    cpu/memory metricType Utilization|AverageValue with an integer utilization; and (stricter than KEDA,
    which only logs them) no parameter the scaler does not read, so a misspelled one fails here.
    Mirrors pkg/scalers/*_scaler.go and pkg/scalers/scalersconfig/typed_config.go @ KEDA_COMMIT."""
    errors = []
    for t in so["spec"]["triggers"]:
        kind, meta = t["type"], t.get("metadata") or {}
        where = t.get("name") or kind
        unknown = set(meta) - KNOWN_METADATA.get(kind, set(meta))
        errors += [f"{where}: unexpected parameter {k!r}" for k in sorted(unknown)]
        if kind == "redis-streams":
            errors += [f"{where}: {e}" for e in redis_streams(meta)[1]]
        elif kind in {"cpu", "memory"}:
            if t.get("metricType") not in {"Utilization", "AverageValue"}:
                errors.append(f"{where}: unknown metric type {t.get('metricType')!r}")
            elif t["metricType"] == "Utilization" and not str(meta.get("value", "")).lstrip("-").isdigit():
                errors.append(f"{where}: utilization {meta.get('value')!r} is not an integer")
        elif kind == "prometheus":
            errors += [f"{where}: missing {k}" for k in ("serverAddress", "query", "threshold") if not meta.get(k)]
            try:
                float(meta.get("threshold", "x"))
            except ValueError:
                errors.append(f"{where}: threshold {meta.get('threshold')!r} is not a number")
    return errors


def webhook_errors(so: Obj, pod_spec: Obj, scaled_objects: list[Obj], hpas: list[Obj]) -> list[str]:
    """The validating webhook's rules for one ScaledObject, given its target's pod spec and the
    namespace's other ScaledObjects and HPAs."""
    return (
        rule_name(so)
        + rule_replica_bounds(so)
        + rule_triggers(so)
        + rule_cpu_memory(so, pod_spec)
        + rule_one_autoscaler_per_target(so, scaled_objects, hpas)
    )


def admission_errors(so: Obj, pod_spec: Obj, scaled_objects: list[Obj], hpas: list[Obj]) -> list[str]:
    """Every rule above: the CRD's structure, the webhook's, the scalers' parameters."""
    return structure_errors(so) + webhook_errors(so, pod_spec, scaled_objects, hpas) + rule_scaler_metadata(so)


# ------------------------------------------------------------------------------------- the lag KEDA reads
def redis_streams_lag(client: Any, stream: str, group: str) -> int:
    """What the redis-streams scaler reports in lag mode (createEntriesCountFn, lagFactor): refuses Redis
    < 7 (INFO's redis_version), 0 when the stream does not exist, the group's XINFO GROUPS lag (-1 when
    Redis reports it as NULL, as go-redis reads it), XLEN when the group does not exist yet. `client`: a
    redis-py client. Mirrors pkg/scalers/redis_streams_scaler.go @ KEDA_COMMIT."""
    version = str(client.info("server")["redis_version"])
    if int(version.split(".")[0]) < 7:
        raise RuntimeError("redis version 7+ required for lag")
    try:
        groups = client.xinfo_groups(stream)
    except Exception as error:  # redis.ResponseError: KEDA compares the message
        if "no such key" in str(error):
            return 0
        raise
    for g in groups:
        name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
        if name == group:
            return -1 if g.get("lag") is None else int(g["lag"])
    return int(client.xlen(stream))
