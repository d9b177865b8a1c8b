"""The record of one request at the edge: what the access log, the request metrics and the span report.

The edge (REST middleware, gRPC interceptor) makes a `RequestRecord`, puts it in `current_request` and
finishes it once the response is decided; the model hooks (``predictors.models.base``) fill in what
only they know: model, device, items, batch size and the stage latencies.
"""

from __future__ import annotations

import re
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.trace import Span

#: how the edge treats a route: inference (traced, counted, logged), probe (none of it), other (logged)
RouteKind = Literal["infer", "probe", "other"]

STAGES = ("preprocess", "queue", "predict", "postprocess")


@dataclass
class RequestRecord:
    request_id: str
    protocol: str
    kind: RouteKind = "other"
    model: str = ""
    version: str = ""
    method: str = ""
    path: str = ""
    #: the request's server span when it is traced (recording), else None
    span: Span | None = None
    #: hex trace id: of the span, or of the caller's traceparent when tracing is off
    trace_id: str = ""
    device: str = ""
    items: int = 0
    batch_size: int = 0
    #: seconds per stage (preprocess, queue, predict, postprocess)
    stages: dict[str, float] = field(default_factory=dict)
    #: HTTP status (REST) or gRPC status name (gRPC)
    status: int | str = 0
    code: str = "OK"
    started: float = field(default_factory=time.perf_counter)
    started_unix: float = field(default_factory=time.time)
    duration: float = 0.0
    #: an asynchronous job's run: nobody waits on a connection for it, so its CPU work (decoding, preparing,
    #: finishing) runs on lower-priority threads and yields to the requests somebody waits for
    background: bool = False

    def set_attribute(self, key: str, value: Any) -> None:
        if self.span is not None:
            self.span.set_attribute(key, value)


current_request: ContextVar[RequestRecord | None] = ContextVar("current_request", default=None)


# ---- REST routes ---------------------------------------------------------------------------------

_V1_INFER = re.compile(r"^/v1/models/(?P<model>[^/:]+):predict$")
_V2_INFER = re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")
#: asynchronous job submission: access-logged with the model's name, not inference requests themselves
_JOB_SUBMIT = re.compile(r"^/(?:v1/models/(?P<v1>[^/:]+):submit|v2/models/(?P<v2>[^/]+)/jobs)$")
_V1_MODEL = re.compile(r"^/v1/models/(?P<model>[^/:]+)$")
_V2_READY = re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]+)?/ready$")
_V2_MODEL = re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?$")
#: probes, scrapes and the status page: not traced, not logged, not counted
PROBE_PATHS = frozenset({"/metrics", "/v2/health/live", "/v2/health/ready", "/v2/predictors/status"})


def classify_rest(path: str) -> tuple[RouteKind, str, str, str]:
    """``(kind, protocol, model, version)`` of a REST path."""
    if path in PROBE_PATHS or _V2_READY.match(path):
        return "probe", "v2", "", ""
    if match := _V1_INFER.match(path):
        return "infer", "v1", match["model"], ""
    if match := _V2_INFER.match(path):
        return "infer", "v2", match["model"], match["version"] or ""
    if match := _JOB_SUBMIT.match(path):
        return "other", "v1" if match["v1"] else "v2", match["v1"] or match["v2"], ""
    if match := _V1_MODEL.match(path):
        # GET /v1/models/{name} is KServe's v1 model readiness probe
        return "probe", "v1", match["model"], ""
    if match := _V2_MODEL.match(path):
        return "other", "v2", match["model"], match["version"] or ""
    protocol = "v1" if path.startswith("/v1/") else "v2" if path.startswith("/v2/") else "http"
    return "other", protocol, "", ""


# ---- gRPC methods --------------------------------------------------------------------------------

GRPC_SERVICE = "/inference.GRPCInferenceService/"
_GRPC_PROBES = frozenset({"ServerLive", "ServerReady", "ModelReady"})


def classify_grpc(method_name: str) -> RouteKind:
    method = method_name.rsplit("/", 1)[-1]
    if method in _GRPC_PROBES:
        return "probe"
    if method == "ModelInfer":
        return "infer"
    return "other"
