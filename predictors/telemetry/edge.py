"""What the edge does for every request it serves: in-flight count, request metrics, the access log line."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from typing import Any

from predictors.telemetry.metrics import Metrics
from predictors.telemetry.requests import STAGES, RequestRecord

access_logger = logging.getLogger("predictors.access")


class EdgeTelemetry:
    """Shared by the REST middleware and the gRPC interceptor of one server."""

    def __init__(self, metrics: Metrics | None = None, tracing: bool = False,
                 served_models: Callable[[], Collection[str]] = frozenset) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self._served_models = served_models

    def serves(self, model: str) -> bool:
        return model in self._served_models()

    def model_label(self, record: RequestRecord) -> str:
        """The model's name as a metric label; "" for names not served (bounded label values)."""
        return record.model if record.model and record.model in self._served_models() else ""

    def begin(self, record: RequestRecord) -> None:
        if record.kind == "infer" and self.metrics is not None:
            self.metrics.in_flight.labels(self.model_label(record)).inc()

    def finish(self, record: RequestRecord) -> None:
        record.duration = time.perf_counter() - record.started
        if record.kind == "infer" and self.metrics is not None:
            model = self.model_label(record)
            self.metrics.in_flight.labels(model).dec()
            self.metrics.observe_request(model, record.protocol, record.code, record.duration, record.stages)
        if record.kind != "probe" and access_logger.isEnabledFor(logging.INFO):
            access_logger.info("%s %s %s", record.method or record.protocol, record.path, record.status,
                               extra={"access": access_fields(record)})


def access_fields(record: RequestRecord) -> dict[str, Any]:
    latency = {"total": _ms(record.duration)}
    latency.update({stage: _ms(record.stages[stage]) for stage in STAGES if stage in record.stages})
    fields: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.started_unix, timezone.utc).isoformat(timespec="milliseconds"),
        "request_id": record.request_id,
        "trace_id": record.trace_id,
        "model": record.model,
        "protocol": record.protocol,
        "method": record.method,
        "path": record.path,
        "status": record.status,
        "code": record.code,
        "latency_ms": latency,
        "batch_size": record.batch_size or None,
        "items": record.items or None,
    }
    if record.version:
        fields["model_version"] = record.version
    if record.device:
        fields["device"] = record.device
    return fields


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
