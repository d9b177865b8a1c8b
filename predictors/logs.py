"""Log configuration of the server process."""

from __future__ import annotations

import logging

from predictors.telemetry.context import current_request_id


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get() or "-"
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
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
