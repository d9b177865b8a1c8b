"""The request id of the request being served, for logs and error bodies."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(value: str | None) -> str:
    """Use the caller's id when it is sane (printable, bounded), else make one."""
    if value and len(value) <= 128 and value.isprintable():
        return value
    return new_request_id()
