"""ASGI middleware at the edge: request id, request-body limit, and the last-resort 500."""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from predictors.errors import PayloadTooLarge
from predictors.server.errors import error_response
from predictors.telemetry.context import REQUEST_ID_HEADER, accept_request_id, current_request_id

logger = logging.getLogger(__name__)

_REQUEST_ID = REQUEST_ID_HEADER.encode()


class RequestContextMiddleware:
    """Accepts or makes the request id, echoes it, enforces the body limit, and turns crashes into 500s."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

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
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), (_REQUEST_ID, request_id.encode())]}
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
