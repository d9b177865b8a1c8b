"""One request scope for both transports: what every request gets at the edge, whichever way it came.

The REST middleware (`server/middleware.py`) and the gRPC interceptor (`server/grpc_interceptor.py`) each
translate their transport's request into `request_scope(...)`, which settles the request id, sets the
context variables the logs, error bodies and model hooks read, makes the `RequestRecord`, and, unless the
request is a probe, begins and finishes its telemetry (in-flight gauge, request metrics, access log) with a
server span around inference calls. `response_metadata` is what both send back (response headers or
trailing metadata); `client_closed` is how both note a client that went away.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from predictors.errors import CLIENT_CLOSED
from predictors.telemetry import tracing
from predictors.telemetry.context import REQUEST_ID_HEADER, accept_request_id, current_request_id
from predictors.telemetry.edge import EdgeTelemetry
from predictors.telemetry.requests import RequestRecord, RouteKind, current_request

logger = logging.getLogger(__name__)

TRACE_ID_HEADER = "x-trace-id"
#: the W3C trace-context entries taken from a request's headers or metadata
TRACE_CARRIER_KEYS = frozenset({"traceparent", "tracestate", "baggage"})


@contextmanager
def request_scope(telemetry: EdgeTelemetry, *, request_id: str | None, protocol: str, kind: RouteKind,
                  model: str, version: str, method: str, path: str, carrier: Mapping[str, str],
                  span_name: str, span_attributes: Mapping[str, Any]) -> Iterator[RequestRecord]:
    """The scope of one request; yields its record (the caller sets `status`, and `code` on errors).

    `request_id` is the caller's (used when well-formed, else one is made); `carrier` holds the caller's
    trace context; `span_name` and `span_attributes` (transport-specific ones) name the server span of an
    inference call.
    """
    accepted = accept_request_id(request_id)
    current_request_id.set(accepted)
    record = RequestRecord(accepted, protocol, kind, model, version, method, path)
    current_request.set(record)
    if kind == "probe":
        yield record
        return
    telemetry.begin(record)
    try:
        if kind == "infer":
            attributes = {tracing.MODEL: model, tracing.PROTOCOL: protocol, tracing.REQUEST_ID: accepted,
                          **span_attributes}
            if version:
                attributes[tracing.MODEL_VERSION] = version
            with tracing.server_span(record, telemetry.tracing, carrier, span_name, attributes):
                yield record
        else:
            yield record
    finally:
        telemetry.finish(record)


def response_metadata(record: RequestRecord, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    """Request id, the server span's trace context (when traced) and `extra`, for the response."""
    metadata = [(REQUEST_ID_HEADER, record.request_id), *extra]
    traceparent = tracing.traceparent(record)
    if traceparent:
        metadata.append(("traceparent", traceparent))
    if record.trace_id:
        metadata.append((TRACE_ID_HEADER, record.trace_id))
    return metadata


def client_closed(record: RequestRecord, status: int | str, what: str) -> None:
    """The client went away: not a server error (no traceback, no error log); nginx's 499 convention."""
    record.status, record.code = status, CLIENT_CLOSED
    tracing.note_exception(record, CLIENT_CLOSED, None)
    logger.info("request %s (%s): %s", record.request_id, record.protocol, what)
