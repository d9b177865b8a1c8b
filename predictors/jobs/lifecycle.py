"""`Jobs`: asynchronous jobs as one part of the server, from start to drain.

Three Redis clients: the routes' (short timeouts: a submit answers 503 `JOBS_UNAVAILABLE` fast), the
worker's (its reads block up to a second) and the long polls' subscription (`ended.py`). None connects
before it is used, so the server starts and serves synchronous requests whether Redis is there or not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from predictors.dataplane.dataplane import PredictorDataPlane
from predictors.jobs.ended import LISTEN_BLOCK_SECONDS, JobEndings
from predictors.jobs.execute import JobExecutor
from predictors.jobs.service import JobService
from predictors.jobs.store import JobStore, connect
from predictors.jobs.worker import BLOCK_MS, JobWorker
from predictors.runtime import ModelRuntime
from predictors.settings import Settings
from predictors.telemetry.metrics import Metrics

logger = logging.getLogger(__name__)


class Jobs:
    def __init__(self, settings: Settings, dataplane: PredictorDataPlane,
                 runtimes: Mapping[str, ModelRuntime[Any, Any]], metrics: Metrics,
                 tracing_enabled: Callable[[], bool]) -> None:
        url = settings.jobs_redis_url
        assert url is not None
        self.url = url
        self.endings = JobEndings(lambda: connect(url, socket_timeout=LISTEN_BLOCK_SECONDS + 5))
        self.service = JobService(settings, JobStore(connect(url)), dataplane, metrics, self.endings)
        worker_store = JobStore(connect(url, socket_timeout=BLOCK_MS / 1000 + 5))
        self.worker = JobWorker(settings, worker_store, JobExecutor(dataplane), runtimes, metrics, tracing_enabled)

    def start(self) -> None:
        logger.info("jobs: on, Redis at %s", redacted(self.url))
        self.worker.start()

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM: take no new jobs, answer the held long polls now (signal-safe)."""
        self.worker.stop(grace_seconds)
        self.endings.release()

    async def aclose(self) -> None:
        await self.worker.drain()
        await self.worker.store.aclose()
        await self.service.store.aclose()
        await self.endings.aclose()


def redacted(url: str) -> str:
    """`url` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
