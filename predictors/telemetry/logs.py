"""Log configuration of the server process: text or JSON lines, request/trace ids, the access log.

Every record carries the request id and trace id of the request being served (``-``/empty outside
one). ``--log-format json`` writes one JSON object per line (time, level, logger, message, request_id,
trace_id, span_id, and ``exception`` with the stack trace for errors; stack traces never reach callers).

The access log (logger ``predictors.access``, on by default, ``--no-access-log`` to opt out) is one JSON
line per request whatever the format: time, request_id, trace_id, model, protocol, method, path, status,
code, latency_ms (total and per stage), batch_size, items. Probes, ``/metrics`` and the status page are
not logged (see ``predictors.telemetry.requests.PROBE_PATHS``).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Literal

from opentelemetry import trace

from predictors.telemetry.context import current_request_id
from predictors.telemetry.requests import current_request

LogFormat = Literal["text", "json"]
ACCESS_LOGGER = "predictors.access"


class _ContextFilter(logging.Filter):
    """Adds request_id, trace_id and span_id of the current request to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get() or "-"
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        else:
            request = current_request.get()
            record.trace_id = request.trace_id if request is not None else ""
            record.span_id = ""
        return True


#: control characters (and Unicode line breaks) shown escaped in text logs: a message quoting what a client
#: sent (a model name from the URL, say) must not start a forged line or hide text behind a NUL
_ESCAPES = {code: repr(chr(code))[1:-1] for code in (*range(32), 127, 0x85, 0x2028, 0x2029)}


class TextFormatter(logging.Formatter):
    """One line per record (a stack trace, which comes from us, follows on its own lines)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(ids)s] %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = record.message.translate(_ESCAPES)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        trace_id = getattr(record, "trace_id", "")
        request_id = getattr(record, "request_id", "-")
        record.ids = f"{request_id} trace={trace_id}" if trace_id else request_id
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; an ``access`` dict in the record is merged at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "trace_id": getattr(record, "trace_id", ""),
        }
        if getattr(record, "span_id", ""):
            line["span_id"] = getattr(record, "span_id", "")
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line.update(access)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: LogFormat = "text", access_log: bool = True) -> None:
    context = _ContextFilter()
    handler = logging.StreamHandler()
    handler.addFilter(context)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # KServe configures its own loggers on import; route them through ours.
    for name in ("kserve", "kserve.trace", "uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers[:] = []
        named.propagate = True
    # KServe's per-request timing lines duplicate our own request logging; keep its warnings only.
    logging.getLogger("kserve.trace").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # Our access log replaces uvicorn's (which would also log every probe).
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)

    access = logging.getLogger(ACCESS_LOGGER)
    access_handler = logging.StreamHandler(sys.stderr)
    access_handler.addFilter(context)
    access_handler.setFormatter(JsonFormatter())
    access.handlers[:] = [access_handler]
    access.propagate = False
    access.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)
