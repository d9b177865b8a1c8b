"""`PredictorServer`: a `kserve.ModelServer` that serves while models load and drains on SIGTERM.

Start-up order: bind REST and gRPC at once (liveness answers immediately), then load the models one by
one on a background thread; each reports ready after its warm-up inference. A model that fails to load
stops the process with a non-zero exit (fail fast: Kubernetes shows CrashLoopBackOff with the reason).
On SIGTERM the REST server stops accepting connections and finishes in-flight requests within
`shutdown_grace_seconds`; the gRPC server does the same.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

import kserve
from fastapi import FastAPI
from grpc import aio
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.rest.server import RESTServer, _RefreshingServer

from predictors.models.base import VisionPredictor
from predictors.models.registry import ModelEntry, predictor_class
from predictors.server.dataplane import PredictorDataPlane
from predictors.server.errors import GrpcErrorInterceptor, install_rest_handlers
from predictors.server.middleware import RequestContextMiddleware
from predictors.settings import Settings
from predictors.status import STATUS_PATH, server_status
from predictors.telemetry.edge import EdgeTelemetry
from predictors.telemetry.metrics import Metrics
from predictors.telemetry.tracing import configure_tracing, limit_fastapi_telemetry

logger = logging.getLogger(__name__)

#: Largest gRPC response (enhanced images can be large); requests are bounded by `max_body_bytes`.
MAX_GRPC_SEND_BYTES = 64 * 1024 * 1024


class _DrainingUvicorn(_RefreshingServer):
    """Uvicorn that tells us when it was asked to exit (it captures SIGTERM/SIGINT itself)."""

    def __init__(self, config: Any, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            logger.info("signal %s: draining in-flight requests (up to %s s)", sig,
                        self.config.timeout_graceful_shutdown)
            self._on_exit()
        super().handle_exit(sig, frame)


class _RestServer(RESTServer):
    def __init__(self, *args: Any, settings: Settings, on_exit: Callable[[], None], telemetry: EdgeTelemetry,
                 status: Callable[[], dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = settings
        self._telemetry = telemetry
        self._status = status
        self._server = _DrainingUvicorn(self.config, on_exit)

    def create_application(self) -> None:
        super().create_application()
        app: FastAPI = self.config.app if isinstance(self.config.app, FastAPI) else _kserve_app()
        install_rest_handlers(app)
        limit_fastapi_telemetry(app)
        status = self._status

        async def predictors_status() -> dict[str, Any]:
            return status()

        app.add_api_route(STATUS_PATH, predictors_status, methods=["GET"], include_in_schema=False)
        app.add_middleware(RequestContextMiddleware, max_body_bytes=self._settings.max_body_bytes,
                           telemetry=self._telemetry)


def _kserve_app() -> FastAPI:
    from kserve.model_server import app

    return app


class _GrpcServer(GRPCServer):
    telemetry: EdgeTelemetry | None = None
    max_body_bytes: int  # set by PredictorServer from its settings

    async def start(self, max_workers: int) -> None:
        # One limit for both transports: the interceptor answers PAYLOAD_TOO_LARGE above `max_body_bytes`
        # (with our error code, as REST does); grpc's own bound, twice that, only stops absurd messages
        # before they are even parsed.
        self._server = aio.server(
            ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(GrpcErrorInterceptor(self.telemetry, self.max_body_bytes),),
            options=[
                ("grpc.max_send_message_length", MAX_GRPC_SEND_BYTES),
                ("grpc.max_receive_message_length", 2 * self.max_body_bytes),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(self._data_plane, self._model_repository_extension), self._server
        )
        self._server.add_insecure_port(f"[::]:{self._port}")
        logger.info("gRPC v2 listening on port %d", self._port)
        await self._server.start()
        await self._server.wait_for_termination()


class PredictorServer(kserve.ModelServer):
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        super().__init__(
            http_port=settings.http_port,
            grpc_port=settings.grpc_port,
            workers=1,
            enable_grpc=settings.enable_grpc,
            enable_docs_url=False,
            enable_latency_logging=False,
            grace_period=settings.shutdown_grace_seconds,
        )
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.dataplane = PredictorDataPlane(model_registry=self.registered_models)
        self.workers_pool = ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="prep")
        self.models: list[VisionPredictor[Any, Any]] = []
        self.load_failed = False
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._served: frozenset[str] = frozenset()
        self.telemetry = EdgeTelemetry(self.metrics, tracing=False, served_models=lambda: self._served)

    def build_models(self, entries: list[ModelEntry]) -> None:
        for entry in entries:
            model = predictor_class(entry.predictor)(
                entry.name, entry.directory, entry.config, self.metrics, self.workers_pool
            )
            self.register_model(model)
            self.models.append(model)
        self._served = frozenset(model.name for model in self.models)

    def serve(self, entries: list[ModelEntry]) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code."""
        self.build_models(entries)
        # The one tracer provider of the process, from the OTEL_* environment (None: tracing off).
        tracer_provider = configure_tracing()
        self.telemetry.tracing = tracer_provider is not None
        # After uvicorn's graceful shutdown it re-raises the signal it captured: we have drained by then.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        try:
            return asyncio.run(self._serve_all())
        finally:
            if tracer_provider is not None and hasattr(tracer_provider, "shutdown"):
                tracer_provider.shutdown()  # flushes the spans still queued for export

    async def _serve_all(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._rest_server = _RestServer(
            "kserve.model_server:app", self.dataplane, self.model_repository_extension, self.http_port,
            grace_period=self.grace_period, settings=self.settings, on_exit=self._begin_drain,
            telemetry=self.telemetry, status=lambda: server_status(self.models, self.metrics),
        )
        rest = asyncio.create_task(self._rest_server.start(), name="rest")
        grpc_task = None
        if self.enable_grpc:
            self._grpc_server = _GrpcServer(
                self.grpc_port, self.dataplane, self.model_repository_extension, kwargs={},
                grace_period=self.grace_period,
            )
            self._grpc_server.telemetry = self.telemetry
            self._grpc_server.max_body_bytes = self.settings.max_body_bytes
            grpc_task = asyncio.create_task(self._grpc_server.start(self.max_threads), name="grpc")
        loader = asyncio.create_task(self._load_models(), name="load")
        await asyncio.wait([rest, loader], return_when=asyncio.FIRST_COMPLETED)
        if self.load_failed:
            self._rest_server._server.should_exit = True
            self._begin_drain()
        elif not loader.done():
            loader.cancel()
        await asyncio.gather(rest, loader, return_exceptions=True)
        if grpc_task is not None:
            self._begin_drain()
            await asyncio.gather(grpc_task, return_exceptions=True)
        for model in self.models:
            await model.aclose()
        self.workers_pool.shutdown(wait=False, cancel_futures=True)
        return 1 if self.load_failed else 0

    async def _load_models(self) -> None:
        loop = asyncio.get_running_loop()
        for model in self.models:
            try:
                await loop.run_in_executor(None, model.load)
            except Exception:  # noqa: BLE001 - logged by the model; fail fast
                logger.critical("model %s could not be loaded (%s); stopping the server", model.name,
                                model.load_error)
                self.load_failed = True
                return

    def _begin_drain(self) -> None:
        """Stop the gRPC server gracefully; safe to call from a signal handler and more than once."""
        if self._grpc_server is None or self._draining:
            return
        self._draining = True
        grpc_server = self._grpc_server
        loop = self._loop
        assert loop is not None
        loop.call_soon_threadsafe(lambda: loop.create_task(grpc_server.stop(signal.SIGTERM)))
