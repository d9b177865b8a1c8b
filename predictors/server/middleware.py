"""ASGI middleware at the edge: request id, tracing, request metrics and access log, request-body limit,
clients that hang up, and the last-resort 500."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from predictors.errors import CLIENT_CLOSED, CLIENT_CLOSED_STATUS, ModelNotFound, PayloadTooLarge
from predictors.server.errors import code_for_status, error_response
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
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                record.status = int(message.get("status", 0))
                if record.status >= 400 and record.code == "OK":
                    record.code = code_for_status(record.status)
                message = {**message, "headers": [*message.get("headers", []), *extra_headers]}
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if body is None:
                _client_closed(record, "while sending the request body")
                return
            if record.kind == "infer" and record.version:
                # KServe answers versioned routes with NotImplementedError (a 500); no version is served here.
                raise ModelNotFound(f"model '{record.model}' has no version '{record.version}': this server "
                                    f"serves unversioned models (POST /v2/models/{record.model}/infer)")
            replay = _BodyReplay(body)
            if record.kind != "infer":
                await self.app(scope, replay.receive, send_with_id)
            elif not await _until_client_leaves(self.app(scope, replay.receive, send_with_id), receive, replay):
                _client_closed(record, "while the request was being served")
        except Exception as error:  # noqa: BLE001 - the edge answers for everything
            if started:
                tracing.note_exception(record, "INTERNAL_ERROR", error)
                logger.error("request %s failed after the response started", record.request_id, exc_info=error)
                return
            response = error_response(error)
            await response(scope, receive, send_with_id)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole request body, at most `max_body_bytes` (chunked or not); None if the client hung up.

        Read here rather than by the framework so that an oversized body is a 413 however it is sent
        (FastAPI turns any error while it reads a body into a generic 400) and a client that gives up
        half-way is told apart from a server error.
        """
        try:
            declared = int(dict(scope["headers"]).get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared > self.max_body_bytes:
            raise PayloadTooLarge(self._too_large(declared))
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                raise PayloadTooLarge(self._too_large(f"at least {received}"))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, size: Any) -> str:
        return f"request body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes"


class _BodyReplay:
    """Hands the buffered body to the application, then reports the client's disconnect when it comes."""

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body
        self.disconnected = asyncio.Event()

    async def receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.disconnected.wait()
        return {"type": "http.disconnect"}


async def _until_client_leaves(serving: Awaitable[None], receive: Receive, replay: _BodyReplay) -> bool:
    """Run `serving`; if the client disconnects first, cancel it (its queued items are then dropped, never
    run) and return False. True when the application finished (answered or raised)."""
    task = asyncio.ensure_future(serving)
    watcher = asyncio.ensure_future(receive())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and watcher.result()["type"] == "http.disconnect":
            replay.disconnected.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False
        await task
        return True
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()


def _client_closed(record: RequestRecord, when: str) -> None:
    """The client went away: not a server error (no traceback, no error log); nginx's 499 convention."""
    record.status, record.code = CLIENT_CLOSED_STATUS, CLIENT_CLOSED
    tracing.note_exception(record, CLIENT_CLOSED, None)
    logger.info("request %s: the client closed the connection %s", record.request_id, when)


def _route(protocol: str, version: str) -> str:
    if protocol == "v1":
        return "/v1/models/{model_name}:predict"
    if version:
        return "/v2/models/{model_name}/versions/{model_version}/infer"
    return "/v2/models/{model_name}/infer"
