"""OpenTelemetry tracing, configured only by the standard ``OTEL_*`` environment variables.

`configure_tracing` runs once at server start. It installs an SDK `TracerProvider` when the
environment asks for traces (``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` or ``OTEL_TRACES_EXPORTER``
other than ``none``; ``OTEL_SDK_DISABLED=true`` wins) and does nothing otherwise: then no span object
is ever made and a request pays one boolean test (and, when the caller sent one, the parse of its
``traceparent`` so its trace id still reaches the logs).

The SDK itself reads the rest: ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (resource),
``OTEL_TRACES_SAMPLER`` / ``_ARG`` (sampler, default parentbased_always_on), ``OTEL_BSP_*`` (batching),
``OTEL_EXPORTER_OTLP_[TRACES_]{ENDPOINT,HEADERS,TIMEOUT,COMPRESSION,CERTIFICATE}`` (exporter) and
``OTEL_PROPAGATORS`` (default W3C tracecontext + baggage). ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``
picks ``http/protobuf`` (default, as the specification says) or ``grpc``.

OpenTelemetry Operator auto-instrumentation (``opentelemetry-instrument``) configures the SDK before our
code runs and its ASGI/gRPC instrumentations open the server span: then we keep its provider and, at
the edge, enrich its server span instead of opening a second one (see `server_span`). FastAPI's own
native telemetry (FastAPI >= 0.16x opens an HTTP server span whenever a tracer provider is installed)
is treated the same way and limited to inference routes by `limit_fastapi_telemetry`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from predictors.telemetry.requests import RequestRecord, classify_rest

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "vision-predictors"
#: module-level proxy tracer: it delegates to whatever provider is installed later (OTel's own pattern)
tracer = trace.get_tracer("predictors")

# attribute keys of our spans
MODEL = "predictors.model.name"
MODEL_VERSION = "predictors.model.version"
PROTOCOL = "predictors.protocol"
DEVICE = "predictors.device"
ITEMS = "predictors.items"
BATCH_SIZE = "predictors.batch.size"
BATCH_REQUESTS = "predictors.batch.requests"
ERROR_CODE = "predictors.error.code"
REQUEST_ID = "predictors.request_id"

_W3C = TraceContextTextMapPropagator()


def tracing_requested(env: Mapping[str, str]) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER")
    if exporters is not None and exporters.strip():
        return bool(_exporter_names(exporters) - {"none"})
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _exporter_names(value: str) -> set[str]:
    return {name.strip().lower() for name in value.split(",") if name.strip()}


def preconfigured() -> bool:
    """True when something (auto-instrumentation) installed a real tracer provider before us."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def configure_tracing(env: Mapping[str, str] | None = None) -> Any | None:
    """Install the SDK tracer provider the environment asks for; return it (to shut down), else None.

    Returns the existing provider when auto-instrumentation configured one already, None when tracing
    is off.
    """
    env = os.environ if env is None else env
    if preconfigured():
        logger.info("tracing: using the tracer provider configured by OpenTelemetry auto-instrumentation")
        return trace.get_tracer_provider()
    if not tracing_requested(env):
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER[_ARG]
    described = []
    for name in sorted(_exporter_names(env.get("OTEL_TRACES_EXPORTER") or "otlp") - {"none"}):
        exporter, description = _exporter(name, env)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        described.append(description)
    trace.set_tracer_provider(provider)
    logger.info("tracing: exporting spans of service %s via %s", resource.attributes.get(SERVICE_NAME),
                ", ".join(described))
    return provider


def _exporter(name: str, env: Mapping[str, str]) -> tuple[Any, str]:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(), "console"
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported exporter {name!r} (use otlp, console or none)")
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip().lower()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(), "OTLP/gRPC"
    if protocol != "http/protobuf":
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported {protocol!r} (use http/protobuf or grpc)")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(), "OTLP/HTTP (protobuf)"


# ---- the edge --------------------------------------------------------------------------------------


@contextmanager
def server_span(record: RequestRecord, enabled: bool, carrier: Mapping[str, str], name: str,
                attributes: Mapping[str, Any], kind: SpanKind = SpanKind.SERVER) -> Iterator[None]:
    """Make `record.span` the request's server span (current while the body runs) when traced; `kind`
    CONSUMER for a job run (a child of the submitting request's trace, whose `carrier` was stored).

    When tracing is off only the caller's trace id is noted. When a span is already recording here
    (auto-instrumentation's ASGI/gRPC server span), that one is enriched; no second server span.
    """
    if not enabled:
        if "traceparent" in carrier:
            parent = trace.get_current_span(_W3C.extract(carrier)).get_span_context()
            if parent.is_valid:
                record.trace_id = format(parent.trace_id, "032x")
        yield
        return
    outer = trace.get_current_span()
    if outer.is_recording():
        record.span = outer
        _note_ids(record, outer.get_span_context())
        outer.set_attributes(attributes)
        try:
            yield
        finally:
            if record.code != "OK":
                outer.set_attribute(ERROR_CODE, record.code)
        return
    parent_context = propagate.extract(carrier)
    span = tracer.start_span(name, context=parent_context, kind=kind, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span, parent_context))
    _note_ids(record, span.get_span_context())
    record.span = span if span.is_recording() else None
    try:
        yield
    finally:
        otel_context.detach(token)
        _close_server_span(span, record)


def _note_ids(record: RequestRecord, span_context: SpanContext) -> None:
    if span_context.is_valid:
        record.trace_id = format(span_context.trace_id, "032x")


def _close_server_span(span: trace.Span, record: RequestRecord) -> None:
    if span.is_recording():
        if record.code != "OK":
            span.set_attribute(ERROR_CODE, record.code)
        if isinstance(record.status, int) and record.status:
            span.set_attribute("http.response.status_code", record.status)
            if record.status >= 500:
                span.set_status(Status(StatusCode.ERROR, record.code))
        elif isinstance(record.status, str):
            span.set_attribute("rpc.grpc.status_code", record.status)
            if record.status in _GRPC_SERVER_ERRORS:
                span.set_status(Status(StatusCode.ERROR, record.code))
    span.end()


#: gRPC status codes that are server errors (OTel semantic conventions for RPC server spans)
_GRPC_SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
                                 "DATA_LOSS"})


def traceparent(record: RequestRecord) -> str | None:
    """The W3C traceparent of the request's server span, for the response header."""
    if record.span is None:
        return None
    span_context = record.span.get_span_context()
    if not span_context.is_valid:
        return None
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


def note_exception(record: RequestRecord | None, code: str, error: BaseException | None) -> None:
    """The edge decided the error `code` for the request (and `error` is unexpected: record it)."""
    if record is None:
        return
    record.code = code
    if record.span is not None:
        # now, not at the end: an outer (FastAPI/auto-instrumentation) span may end with the response
        record.span.set_attribute(ERROR_CODE, code)
        if error is not None:
            record.span.record_exception(error)


# ---- inside the request ----------------------------------------------------------------------------


@contextmanager
def stage_span(record: RequestRecord | None, name: str) -> Iterator[None]:
    """Time a stage of the request into `record.stages` and, when traced, make it a child span."""
    started = time.perf_counter()
    try:
        if record is not None and record.span is not None:
            with tracer.start_as_current_span(name):
                yield
        else:
            yield
    finally:
        if record is not None:
            record.stages[name] = time.perf_counter() - started


def retro_span(record: RequestRecord | None, name: str, start_ns: int, end_ns: int,
               attributes: Mapping[str, Any] | None = None) -> None:
    """A child span of the request whose times were measured elsewhere (the queue wait)."""
    if record is None or record.span is None:
        return
    parent = trace.set_span_in_context(record.span)
    span = tracer.start_span(name, context=parent, start_time=start_ns, attributes=attributes)
    span.end(end_time=max(start_ns, end_ns))


def batch_span(records: Iterable[RequestRecord | None], attributes: Mapping[str, Any]) -> trace.Span | None:
    """The span of one forward pass: child of the first traced request, linked to every traced request."""
    contexts: list[SpanContext] = []
    seen: set[int] = set()
    for record in records:
        if record is None or record.span is None:
            continue
        span_context = record.span.get_span_context()
        if span_context.span_id not in seen:
            seen.add(span_context.span_id)
            contexts.append(span_context)
    if not contexts:
        return None
    first = contexts[0]
    parent = trace.set_span_in_context(trace.NonRecordingSpan(first))
    links = [Link(c) for c in contexts]
    return tracer.start_span("predict", context=parent, links=links,
                             attributes={**attributes, BATCH_REQUESTS: len(contexts)})


def limit_fastapi_telemetry(config: dict[str, Any] | None) -> None:
    """FastAPI's native telemetry: trace inference routes only (no probe/metrics spans), and no
    per-operation spans (dependencies/endpoint/serialization), so our stage spans hang off the server span.

    FastAPI offers these settings only as ``FastAPI(telemetry=...)`` and KServe builds the app: `config` is
    the app's settings mapping (`kserve_compat.fastapi_telemetry_config`), None when this FastAPI has no
    native telemetry.
    """
    if config is not None:
        config["exclude"] = _not_inference
        config["operation_spans"] = False


def _not_inference(scope: Mapping[str, Any]) -> bool:
    return scope.get("type") != "http" or classify_rest(str(scope.get("path", "")))[0] != "infer"
