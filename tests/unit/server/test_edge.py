"""`request_scope`: the one request lifecycle both transports run."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from predictors.kserve_compat import metric_value
from predictors.server.edge import client_closed, request_scope, response_metadata
from predictors.telemetry.context import current_request_id
from predictors.telemetry.edge import EdgeTelemetry
from predictors.telemetry.metrics import Metrics
from predictors.telemetry.requests import RouteKind, current_request

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _scope(telemetry: EdgeTelemetry, kind: RouteKind, request_id: str | None = "abc-1", **carrier: str):  # type: ignore[no-untyped-def]
    return request_scope(telemetry, request_id=request_id, protocol="grpc", kind=kind, model="tiny", version="",
                         method="", path="/inference.GRPCInferenceService/ModelInfer", carrier=carrier,
                         span_name="ModelInfer", span_attributes={"rpc.system": "grpc"})


def test_infer_scope_counts_in_flight_and_records_the_request() -> None:
    registry = CollectorRegistry()
    telemetry = EdgeTelemetry(Metrics(registry), served_models=lambda: {"tiny"})
    with _scope(telemetry, "infer", traceparent=TRACEPARENT) as record:
        assert current_request.get() is record and current_request_id.get() == "abc-1"
        assert metric_value(telemetry.metrics.in_flight.labels("tiny")) == 1  # type: ignore[union-attr]
        record.status = "OK"
    assert metric_value(telemetry.metrics.in_flight.labels("tiny")) == 0  # type: ignore[union-attr]
    assert registry.get_sample_value("predictors_requests_total",
                                     {"model": "tiny", "protocol": "grpc", "code": "OK"}) == 1
    # tracing off: the caller's trace id is still noted and sent back
    assert response_metadata(record) == [("x-request-id", "abc-1"),
                                         ("x-trace-id", "0af7651916cd43dd8448eb211c80319c")]


def test_probe_scope_sets_the_context_but_counts_nothing() -> None:
    registry = CollectorRegistry()
    telemetry = EdgeTelemetry(Metrics(registry), served_models=lambda: {"tiny"})
    with _scope(telemetry, "probe", request_id="bad id\n") as record:
        assert current_request_id.get() == record.request_id != "bad id\n"
    assert registry.get_sample_value("predictors_requests_total",
                                     {"model": "tiny", "protocol": "grpc", "code": "OK"}) is None


def test_an_error_inside_the_scope_still_finishes_it() -> None:
    registry = CollectorRegistry()
    telemetry = EdgeTelemetry(Metrics(registry), served_models=lambda: {"tiny"})
    with pytest.raises(RuntimeError), _scope(telemetry, "infer") as record:
        client_closed(record, "CANCELLED", "the client cancelled the call")
        raise RuntimeError("cancelled")
    assert metric_value(telemetry.metrics.in_flight.labels("tiny")) == 0  # type: ignore[union-attr]
    assert registry.get_sample_value("predictors_requests_total",
                                     {"model": "tiny", "protocol": "grpc", "code": "CLIENT_CLOSED"}) == 1
