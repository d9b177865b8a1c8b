"""ASGI middleware at the edge: request id, tracing, request metrics and access log, request-body limit,
and the last-resort 500."""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from predictors.errors import PayloadTooLarge
from predictors.server.errors import error_response
from predictors.telemetry import tracing
from predictors.telemetry.context import REQUEST_ID_HEADER, accept_request_id, current_request_id
from predictors.telemetry.edge import EdgeTelemetry
from predictors.telemetry.requests import RequestRecord, classify_rest, current_request

logger = logging.getLogger(__name__)

_REQUEST_ID = REQUEST_ID_HEADER.encode()
TRACE_ID_HEADER = b"x-trace-id"


class RequestContextMiddleware:
    """Accepts or makes the request id, echoes it, enforces the body limit, and turns crashes into 500s.

    Inference routes also get a server span (joined to the caller's W3C ``traceparent``; ours is
    returned in the ``traceparent`` and ``X-Trace-ID`` response headers), request metrics and an
    access-log line; other routes an access-log line; probes, ``/metrics`` and the status page nothing.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, telemetry: EdgeTelemetry | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.telemetry = telemetry or EdgeTelemetry()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != _REQUEST_ID]
        incoming = dict(scope["headers"]).get(_REQUEST_ID)
        request_id = accept_request_id(incoming.decode("latin-1") if incoming else None)
        current_request_id.set(request_id)
        # KServe reads headers from the scope: give it the id we settled on.
        scope = {**scope, "headers": [*headers, (_REQUEST_ID, request_id.encode())]}
        path = scope.get("path", "")
        kind, protocol, model, version = classify_rest(path)
        record = RequestRecord(request_id, protocol, kind, model, version, scope.get("method", ""), path)
        current_request.set(record)
        if kind == "probe":
            await self._serve(scope, receive, send, record, [(_REQUEST_ID, request_id.encode())])
            return
        self.telemetry.begin(record)
        try:
            if kind == "infer":
                carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers
                           if k in (b"traceparent", b"tracestate", b"baggage")}
                name = f"{record.method} {_route(protocol, version)}"
                attributes = {tracing.MODEL: model, tracing.PROTOCOL: protocol,
                              tracing.REQUEST_ID: request_id,
                              "http.request.method": record.method, "http.route": _route(protocol, version),
                              "url.path": path}
                if version:
                    attributes[tracing.MODEL_VERSION] = version
                with tracing.server_span(record, self.telemetry.tracing, carrier, name, attributes):
                    await self._serve(scope, receive, send, record, self._response_headers(record))
            else:
                await self._serve(scope, receive, send, record, [(_REQUEST_ID, request_id.encode())])
        finally:
            self.telemetry.finish(record)

    @staticmethod
    def _response_headers(record: RequestRecord) -> list[tuple[bytes, bytes]]:
        extra = [(_REQUEST_ID, record.request_id.encode())]
        traceparent = tracing.traceparent(record)
        if traceparent:
            extra.append((b"traceparent", traceparent.encode()))
        if record.trace_id:
            extra.append((TRACE_ID_HEADER, record.trace_id.encode()))
        return extra

    async def _serve(self, scope: Scope, receive: Receive, send: Send, record: RequestRecord,
                     extra_headers: list[tuple[bytes, bytes]]) -> None:
        request_id = record.request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                record.status = int(message.get("status", 0))
                if record.status >= 400 and record.code == "OK":
                    record.code = "HTTP_ERROR"
                message = {**message, "headers": [*message.get("headers", []), *extra_headers]}
            await send(message)

        try:
            declared = int(dict(scope["headers"]).get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        try:
            if declared > self.max_body_bytes:
                raise PayloadTooLarge(self._too_large(declared))
            await self.app(scope, self._limited(receive), send_with_id)
        except Exception as error:  # noqa: BLE001 - the edge answers for everything
            if started:
                tracing.note_exception(record, "INTERNAL_ERROR", error)
                logger.error("request %s failed after the response started", request_id, exc_info=error)
                return
            response = error_response(error)
            await response(scope, receive, send_with_id)

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(self._too_large(received))
            return message

        return limited_receive

    def _too_large(self, size: Any) -> str:
        return f"request body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes"


def _route(protocol: str, version: str) -> str:
    if protocol == "v1":
        return "/v1/models/{model_name}:predict"
    if version:
        return "/v2/models/{model_name}/versions/{model_version}/infer"
    return "/v2/models/{model_name}/infer"
