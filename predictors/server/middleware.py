"""The REST transport's edge (ASGI middleware): the request scope (`server/edge.py`: request id, tracing,
request metrics and access log), the request-body limit, clients that hang up, and the last-resort 500."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from predictors.dataplane.context import request_query
from predictors.errors import CLIENT_CLOSED_STATUS, ModelNotFound, PayloadTooLarge
from predictors.server.edge import TRACE_CARRIER_KEYS, client_closed, request_scope, response_metadata
from predictors.server.errors import code_for_status, error_response
from predictors.telemetry import tracing
from predictors.telemetry.context import REQUEST_ID_HEADER
from predictors.telemetry.edge import EdgeTelemetry
from predictors.telemetry.requests import RequestRecord, classify_rest

logger = logging.getLogger(__name__)

_REQUEST_ID = REQUEST_ID_HEADER.encode()

class RequestContextMiddleware:
    """Accepts or makes the request id, echoes it, enforces the body limit, and turns crashes into 500s.

    Inference routes also get a server span (joined to the caller's W3C ``traceparent``; ours is
    returned in the ``traceparent`` and ``X-Trace-ID`` response headers), request metrics and an
    access-log line; other routes an access-log line; probes, ``/metrics`` and the status page nothing.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, telemetry: EdgeTelemetry) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.telemetry = telemetry  # also knows which models are served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != _REQUEST_ID]
        incoming = dict(scope["headers"]).get(_REQUEST_ID)
        path = scope.get("path", "")
        kind, protocol, model, version = classify_rest(path)
        method = scope.get("method", "")
        route = _route(protocol, version)
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers
                   if k.decode("latin-1") in TRACE_CARRIER_KEYS}
        attributes = {"http.request.method": method, "http.route": route, "url.path": path}
        with request_scope(self.telemetry, request_id=incoming.decode("latin-1") if incoming else None,
                           protocol=protocol, kind=kind, model=model, version=version, method=method, path=path,
                           carrier=carrier, span_name=f"{method} {route}", span_attributes=attributes) as record:
            # KServe reads headers from the scope: give it the id we settled on.
            scope = {**scope, "headers": [*headers, (_REQUEST_ID, record.request_id.encode())]}
            await self._serve(scope, receive, send, record)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, record: RequestRecord) -> None:
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                record.status = int(message.get("status", 0))
                if record.status >= 400 and record.code == "OK":
                    record.code = code_for_status(record.status)
                extra = [(k.encode(), v.encode()) for k, v in response_metadata(record)]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if body is None:
                client_closed(record, CLIENT_CLOSED_STATUS, "the client closed the connection while sending the body")
                return
            if record.kind == "infer" and not self.telemetry.serves(record.model):
                # Before the framework parses the body: an unknown model is a 404 whatever the body holds.
                raise ModelNotFound(f"model '{record.model}' is not served here")
            request_query.set(scope.get("query_string", b"").decode("latin-1"))
            replay = _BodyReplay(body)
            if record.kind != "infer":
                await self.app(scope, replay.receive, send_with_id)
            elif not await _until_client_leaves(self.app(scope, replay.receive, send_with_id), receive, replay):
                client_closed(record, CLIENT_CLOSED_STATUS,
                              "the client closed the connection while the request was being served")
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


def _route(protocol: str, version: str) -> str:
    if protocol == "v1":
        return "/v1/models/{model_name}:predict"
    if version:
        return "/v2/models/{model_name}/versions/{model_version}/infer"
    return "/v2/models/{model_name}/infer"
