"""The request id of the request being served, for logs and error bodies."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")


def new_request_id() -> str:
    return uuid.uuid4().hex


#: A caller's request id is echoed in headers and written into logs: only a bounded, inert alphabet (no
#: newlines or quotes to forge log lines, no header injection), as UUIDs, ULIDs and trace ids use.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def accept_request_id(value: str | None) -> str:
    """Use the caller's id when it is at most 128 characters of ``[A-Za-z0-9._-]``, else make one."""
    if value and _SAFE_REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()
