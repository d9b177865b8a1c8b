"""The edge + model hooks with a tiny fake predictor: span tree, traceparent, metrics, access log."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI, Request
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from PIL import Image
from prometheus_client import CollectorRegistry

from predictors.codecs.types import OutputSpec
from predictors.dataplane.kserve_model import KServeModel
from predictors.kserve_compat import metric_value
from predictors.models.base import ModelConfig, Predictor
from predictors.runtime import ModelRuntime
from predictors.server.errors import install_rest_handlers
from predictors.server.middleware import RequestContextMiddleware
from predictors.settings import BatchingConfig
from predictors.telemetry.edge import EdgeTelemetry
from predictors.telemetry.metrics import Metrics

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


class Tiny(Predictor[int, int]):
    predictor_name = "tiny"
    outputs = (OutputSpec("size", "INT64"),)

    def load_weights(self, device: torch.device) -> None:
        pass

    def prepare(self, item: Any, params: Any) -> int:
        return item["image"].width

    def forward(self, batch: Sequence[int], device: torch.device) -> list[int]:
        return [value * 2 for value in batch]

    def finish(self, prepared: int, raw: int, params: Any) -> dict[str, Any]:
        return {"size": raw}

    def warmup_item(self) -> dict[str, Any]:
        return {"image": Image.new("RGB", (4, 4))}


def png(width: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, 3)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def model(metrics: Metrics) -> Iterator[KServeModel]:
    pool = ThreadPoolExecutor(2)
    config = ModelConfig(device="cpu", batching=BatchingConfig(max_batch_size=8, max_latency_ms=50))
    runtime = ModelRuntime(Tiny("tiny", Path("."), config), metrics, pool)
    runtime.load()
    yield KServeModel(runtime)
    runtime._runner.shutdown()  # type: ignore[union-attr]
    pool.shutdown()


def make_app(model: KServeModel, metrics: Metrics, tracing: bool, outer_span: bool = False) -> Any:
    app = FastAPI(telemetry={"tracing": False})
    install_rest_handlers(app)

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request) -> Any:
        response, _ = await model(await request.json(), dict(request.headers))
        return response

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    telemetry = EdgeTelemetry(metrics, tracing=tracing, served_models=lambda: {"tiny"})
    inner = RequestContextMiddleware(app, max_body_bytes=1 << 20, telemetry=telemetry)
    if not outer_span:
        return inner

    async def auto_instrumented(scope: Any, receive: Any, send: Any) -> None:
        # What opentelemetry-instrumentation-asgi does: a server span around the whole app.
        with trace.get_tracer("auto").start_as_current_span("auto-server", kind=SpanKind.SERVER):
            await inner(scope, receive, send)

    return auto_instrumented


async def post(app: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/v1/models/tiny:predict", json=body, headers=headers or {})


def by_name(finished: Sequence[Any]) -> dict[str, Any]:
    return {span.name: span for span in finished}


async def test_span_tree_joins_the_callers_trace(spans: Any, model: KServeModel, metrics: Metrics) -> None:
    response = await post(make_app(model, metrics, tracing=True),
                          {"instances": [{"image": {"b64": png(5)}}, {"image": {"b64": png(7)}}]},
                          {"traceparent": TRACEPARENT})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [{"size": 10}, {"size": 14}]}
    named = by_name(spans.get_finished_spans())
    assert set(named) == {"POST /v1/models/{model_name}:predict", "preprocess", "queue", "predict",
                          "postprocess"}
    server = named["POST /v1/models/{model_name}:predict"]
    assert server.kind == SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == CALLER_TRACE
    assert format(server.parent.span_id, "016x") == CALLER_SPAN
    for stage in ("preprocess", "queue", "predict", "postprocess"):
        assert named[stage].parent.span_id == server.context.span_id, stage
        assert named[stage].context.trace_id == server.context.trace_id
    assert [link.context.span_id for link in named["predict"].links] == [server.context.span_id]
    assert named["predict"].attributes["predictors.batch.size"] == 2
    attributes = server.attributes
    assert attributes["predictors.model.name"] == "tiny"
    assert attributes["predictors.protocol"] == "v1"
    assert attributes["predictors.device"] == "cpu"
    assert attributes["predictors.items"] == 2
    assert attributes["predictors.batch.size"] == 2
    assert attributes["http.response.status_code"] == 200
    assert response.headers["x-trace-id"] == CALLER_TRACE
    assert response.headers["traceparent"] == f"00-{CALLER_TRACE}-{server.context.span_id:016x}-01"


async def test_one_forward_pass_is_linked_to_every_request_in_it(spans: Any, model: KServeModel,
                                                                 metrics: Metrics) -> None:
    app = make_app(model, metrics, tracing=True)
    responses = await asyncio.gather(*(post(app, {"instances": [{"image": {"b64": png(3 + i)}}]})
                                       for i in range(3)))
    assert all(r.status_code == 200 for r in responses)
    finished = spans.get_finished_spans()
    servers = {s.context.span_id for s in finished if s.kind == SpanKind.SERVER}
    forwards = [s for s in finished if s.name == "predict"]
    assert len(servers) == 3
    linked = {link.context.span_id for forward in forwards for link in forward.links}
    assert linked == servers
    for forward in forwards:
        assert forward.parent.span_id in servers
        assert forward.attributes["predictors.batch.requests"] == len(forward.links)
    assert sum(f.attributes["predictors.batch.size"] for f in forwards) == 3


async def test_errors_carry_the_code(spans: Any, model: KServeModel, metrics: Metrics,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "predictors.access")
    response = await post(make_app(model, metrics, tracing=True), {"instances": [{"image": {"b64": "%%"}}]})
    assert response.status_code == 400
    server = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert server.attributes["predictors.error.code"] == "INVALID_INPUT"
    assert server.attributes["http.response.status_code"] == 400
    assert metric_value(metrics.requests.labels("tiny", "v1", "INVALID_INPUT")) == 1
    access = [r.access for r in caplog.records if r.name == "predictors.access"]
    assert access and access[-1]["code"] == "INVALID_INPUT" and access[-1]["status"] == 400


async def test_auto_instrumentation_span_is_reused_not_doubled(spans: Any, model: KServeModel,
                                                               metrics: Metrics) -> None:
    response = await post(make_app(model, metrics, tracing=True, outer_span=True),
                          {"instances": [{"image": {"b64": png(5)}}]})
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    servers = [s for s in finished if s.kind == SpanKind.SERVER]
    assert [s.name for s in servers] == ["auto-server"]
    assert servers[0].attributes["predictors.model.name"] == "tiny"
    named = by_name(finished)
    assert named["preprocess"].parent.span_id == servers[0].context.span_id


async def test_tracing_off_makes_no_spans_but_keeps_the_callers_trace_id(
        spans: Any, model: KServeModel, metrics: Metrics, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "predictors.access")
    response = await post(make_app(model, metrics, tracing=False),
                          {"instances": [{"image": {"b64": png(5)}}]},
                          {"traceparent": TRACEPARENT, "x-request-id": "req-1"})
    assert response.status_code == 200
    assert spans.get_finished_spans() == ()
    assert "traceparent" not in response.headers
    assert response.headers["x-trace-id"] == CALLER_TRACE
    line = next(r.access for r in caplog.records if r.name == "predictors.access")
    assert line["request_id"] == "req-1" and line["trace_id"] == CALLER_TRACE
    assert (line["model"], line["protocol"], line["status"], line["code"]) == ("tiny", "v1", 200, "OK")
    assert line["batch_size"] == 1 and line["items"] == 1
    assert set(line["latency_ms"]) == {"total", "preprocess", "queue", "predict", "postprocess"}


async def test_request_metrics(model: KServeModel, metrics: Metrics) -> None:
    app = make_app(model, metrics, tracing=False)
    assert (await post(app, {"instances": [{"image": {"b64": png(5)}}] * 3})).status_code == 200
    registry = metrics.registry
    assert registry.get_sample_value("predictors_requests_total",
                                     {"model": "tiny", "protocol": "v1", "code": "OK"}) == 1
    assert registry.get_sample_value("predictors_request_duration_seconds_count",
                                     {"model": "tiny", "protocol": "v1"}) == 1
    for stage in ("preprocess", "queue", "predict", "postprocess"):
        assert registry.get_sample_value("predictors_request_stage_duration_seconds_count",
                                         {"model": "tiny", "stage": stage}) == 1, stage
    assert registry.get_sample_value("predictors_requests_in_flight", {"model": "tiny"}) == 0
    assert registry.get_sample_value("predictors_items_processed_total", {"model": "tiny"}) == 3
