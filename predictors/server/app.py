"""`PredictorServer`: a `kserve.ModelServer` that serves while models load and drains on SIGTERM.

Start-up order: bind REST and gRPC at once (liveness answers immediately), then load the models one by
one on a background thread; each reports ready after its warm-up inference. A model that fails to load
stops the process with a non-zero exit (fail fast: Kubernetes shows CrashLoopBackOff with the reason).
A model whose device is lost (an unrecoverable CUDA error) stops being ready and the process exits
with EXIT_DEVICE_LOST, for Kubernetes to restart it on a fresh CUDA context.
On SIGTERM the REST server stops accepting connections and finishes in-flight requests within
`shutdown_grace_seconds`; the gRPC server does the same, and asynchronous jobs (`predictors/jobs`, when
`jobs_redis_url` is set) take no new job and finish or hand back the running ones in the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any, TypeVar

import cv2
import kserve
import torch
from fastapi import FastAPI
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.rest.server import RESTServer

from predictors import allocator
from predictors.dataplane.dataplane import PredictorDataPlane
from predictors.dataplane.image_urls import ImageFetcher
from predictors.dataplane.kserve_model import KServeModel
from predictors.device import LowerPriority
from predictors.jobs.lifecycle import Jobs
from predictors.kserve_compat import (
    RefreshingUvicorn,
    install_uvicorn,
    metric_value,
    request_rest_exit,
    serve_grpc,
)
from predictors.models.base import ModelFileError
from predictors.models.registry import ModelEntry, predictor_class
from predictors.runtime import ModelRuntime
from predictors.server.event_loop import loop_factory
from predictors.server.grpc_interceptor import GrpcEdgeInterceptor
from predictors.server.grpc_service import InferenceService, generic_handler
from predictors.server.openapi import ServedModel, openapi_document
from predictors.server.rest import RestRoutes, build_app
from predictors.settings import Settings
from predictors.status import server_status
from predictors.telemetry.edge import EdgeTelemetry
from predictors.telemetry.metrics import Metrics
from predictors.telemetry.tracing import configure_tracing

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Largest gRPC response (enhanced images can be large); requests are bounded by `max_body_bytes`.
MAX_GRPC_SEND_BYTES = 64 * 1024 * 1024
#: process exit codes (docs/deploying.md, "Health and lifecycle"); 2 (unusable configuration) is the CLI's
EXIT_LOAD_FAILED = 1
EXIT_CANNOT_LISTEN = 2  # a port cannot be bound: configuration, like the CLI's other exit-2 cases
EXIT_DEVICE_LOST = 3
#: After the servers have drained, how long the interpreter may take to exit before the process ends anyway:
#: a forward pass cannot be interrupted, and Python joins the device thread running it at exit.
EXIT_WATCHDOG_SECONDS = 3.0


class _DrainingUvicorn(RefreshingUvicorn):
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
    """KServe's REST server (uvicorn, TLS certificate refresh) serving our application (`server/rest.py`), made
    before it is: KServe's own `create_application` would add its module-level app's routes and handlers."""

    def __init__(self, app: FastAPI, *args: Any, on_exit: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)  # type: ignore[arg-type]  # uvicorn takes the app itself too
        install_uvicorn(self, _DrainingUvicorn(self.config, on_exit))

    def create_application(self) -> None:
        """Nothing to do: the application was made and configured in `__init__`."""


class _GrpcServer(GRPCServer):
    telemetry: EdgeTelemetry | None = None
    max_body_bytes: int  # set by PredictorServer from its settings

    async def start(self, max_workers: int) -> None:
        # One limit for both transports: the interceptor answers PAYLOAD_TOO_LARGE above `max_body_bytes`
        # (with our error code, as REST does); grpc's own bound, twice that, only stops absurd messages
        # before they are even parsed.
        await serve_grpc(
            self, max_workers=max_workers, handler=generic_handler(InferenceService(self._data_plane)),
            interceptors=(GrpcEdgeInterceptor(self.telemetry, self.max_body_bytes),),
            options=[
                ("grpc.max_send_message_length", MAX_GRPC_SEND_BYTES),
                ("grpc.max_receive_message_length", 2 * self.max_body_bytes),
            ],
        )


def job_workers_pool(settings: Settings) -> ThreadPoolExecutor | None:
    """Where asynchronous jobs decode, prepare and finish (None without jobs): threads of their own, niced by
    `cpu_forward_nice`, so the submits and synchronous requests that arrive when a batch of jobs ends (its
    outcomes written, the next jobs taken and prepared at once) are served first: the submits' image checks
    waited behind that work (p99 22 ms of a ~1 ms decode; on these threads 13 ms). Not under SCHED_IDLE with
    the forward pass (`cpu_forward_idle`): there they shared the cores with it as equals, and job throughput fell
    below 0.95 x synchronous in four benchmark runs of five (docs/performance.md, "Asynchronous jobs")."""
    if not settings.jobs_redis_url:
        return None
    return ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="jobs-prep",
                              initializer=LowerPriority(settings.cpu_forward_nice).apply)


def forward_priority(settings: Settings) -> LowerPriority:
    """The priority of forward passes on a CPU, below request handling."""
    return LowerPriority(settings.cpu_forward_nice, settings.cpu_forward_idle)


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
        self.image_urls = ImageFetcher(settings)
        self.background_pool = job_workers_pool(settings)
        self.models: list[KServeModel] = []
        self.load_failed = False
        self.exit_code = 0
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._served: frozenset[str] = frozenset()
        self.telemetry = EdgeTelemetry(self.metrics, tracing=False, served_models=lambda: self._served)
        self.jobs: Jobs | None = None
        # resolved here, so a uvloop that is asked for and missing stops the server before the models load
        self.event_loop_name, self._loop_factory = loop_factory(settings.event_loop)

    def build_models(self, entries: list[ModelEntry]) -> None:
        for entry in entries:
            predictor = predictor_class(entry.predictor)(entry.name, entry.directory, entry.config)
            runtime = ModelRuntime(predictor, self.metrics, self.workers_pool, forward_priority(self.settings),
                                   self.background_pool)
            runtime.on_device_lost = self._device_lost
            model = KServeModel(runtime, self.image_urls)
            self.register_model(model)
            self.models.append(model)
        self._served = frozenset(model.name for model in self.models)
        if self.settings.jobs_redis_url:
            self.jobs = Jobs(self.settings, self.dataplane, {model.name: model.runtime for model in self.models},
                             self.metrics, tracing_enabled=lambda: self.telemetry.tracing)

    def serve(self, entries: list[ModelEntry]) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code."""
        # OpenCV sizes its thread pool from the node's cores, not the container's CPU limit; torch follows
        # OMP_NUM_THREADS (which the chart sets from that limit): decoding and warps get the same number.
        cv2.setNumThreads(torch.get_num_threads())
        logger.info("torch intra-op threads: %d; OpenCV threads: %d", torch.get_num_threads(), cv2.getNumThreads())
        self.build_models(entries)
        # The one tracer provider of the process, from the OTEL_* environment (None: tracing off).
        tracer_provider = configure_tracing()
        self.telemetry.tracing = tracer_provider is not None
        # After uvicorn's graceful shutdown it re-raises the signal it captured: we have drained by then.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        logger.info("event loop: %s; memory allocator: %s", self.event_loop_name, allocator.in_use())
        try:
            with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                exit_code = runner.run(self._serve_all())
        finally:
            if tracer_provider is not None and hasattr(tracer_provider, "shutdown"):
                tracer_provider.shutdown()  # flushes the spans still queued for export
        _exit_even_if_a_forward_pass_runs(exit_code)
        return exit_code

    async def _serve_all(self) -> int:
        self._loop = asyncio.get_running_loop()
        served = [ServedModel(model.name, model.runtime.predictor.inputs, model.runtime.predictor.outputs,
                              model.runtime.predictor.Parameters) for model in self.models]
        document = openapi_document(self.settings, served)
        routes = RestRoutes(self.dataplane, self._status, lambda: document, self.metrics.registry)
        app = build_app(routes, jobs=self.jobs.service if self.jobs else None,
                        max_body_bytes=self.settings.max_body_bytes, telemetry=self.telemetry)
        self._rest_server = _RestServer(app, self.dataplane, self.model_repository_extension, self.http_port,
                                        grace_period=self.grace_period, on_exit=self._begin_drain)
        rest = asyncio.create_task(self._listen("REST", self.http_port, self._rest_server.start()), name="rest")
        grpc_task = None
        if self.enable_grpc:
            self._grpc_server = _GrpcServer(
                self.grpc_port, self.dataplane, self.model_repository_extension, kwargs={},
                grace_period=self.grace_period,
            )
            self._grpc_server.telemetry = self.telemetry
            self._grpc_server.max_body_bytes = self.settings.max_body_bytes
            grpc_task = asyncio.create_task(
                self._listen("gRPC", self.grpc_port, self._grpc_server.start(self.max_threads)), name="grpc")
        loader = asyncio.create_task(self._load_models(), name="load")
        if self.jobs is not None:
            self.jobs.start()  # each model's consumer waits for its model to be ready
        await asyncio.wait([rest, loader, *([grpc_task] if grpc_task else [])], return_when=asyncio.FIRST_COMPLETED)
        if self.load_failed or self.exit_code == EXIT_CANNOT_LISTEN:
            self._stop_serving()
        elif not loader.done():
            loader.cancel()
        await asyncio.gather(rest, loader, return_exceptions=True)
        if grpc_task is not None:
            self._begin_drain()
            await asyncio.gather(grpc_task, return_exceptions=True)
        if self.jobs is not None:
            await self.jobs.aclose()  # within the grace period that began with the signal
        for model in self.models:
            await model.runtime.aclose()
        self.workers_pool.shutdown(wait=False, cancel_futures=True)
        if self.background_pool is not None:
            self.background_pool.shutdown(wait=False, cancel_futures=True)
        return self.exit_code

    def _status(self) -> dict[str, Any]:
        return server_status([model.runtime for model in self.models], self.metrics,
                             in_flight=lambda name: int(metric_value(self.metrics.in_flight.labels(name))))

    async def _listen(self, transport: str, port: int, serving: Coroutine[Any, Any, None]) -> None:
        """Serve `transport` until it stops; a port that cannot be bound stops the server at once with
        EXIT_CANNOT_LISTEN and one line saying so (uvicorn would exit with its own code 3, which here
        means a lost device, and gRPC would fail on its own while REST went on serving)."""
        try:
            await serving
        except (SystemExit, OSError, RuntimeError) as error:
            if self._draining or self.exit_code:
                raise
            logger.critical("cannot serve %s on port %d (%s); stopping the server", transport, port,
                            error if not isinstance(error, SystemExit) else "address in use or not allowed")
            self.exit_code = EXIT_CANNOT_LISTEN

    async def _load_models(self) -> None:
        for model in self.models:
            try:
                await _on_daemon_thread(model.load, f"load-{model.name}")
            except Exception as error:  # noqa: BLE001 - fail fast, with one line that says why
                # A broken file is the operator's to fix: its name and the reason say it all. Anything
                # else is a bug in a loader, whose stack trace is needed.
                trace = None if isinstance(error, ModelFileError) else error
                logger.critical("model %s could not be loaded: %s; stopping the server", model.name,
                                model.runtime.load_error, exc_info=trace)
                self.load_failed = True
                if self.exit_code == 0:  # a device lost during the warm-up keeps its own code
                    self.exit_code = EXIT_LOAD_FAILED
                return
        freeze_startup_heap()

    def _device_lost(self, model_name: str) -> None:
        """A model's device is unusable (any thread): exit with EXIT_DEVICE_LOST so Kubernetes restarts
        the pod on a fresh CUDA context. The model already reports not ready, so readiness fails first."""
        logger.critical("model %s lost its device; stopping the server (exit code %d) for a restart",
                        model_name, EXIT_DEVICE_LOST)
        loop = self._loop
        if loop is None:
            return

        def stop() -> None:
            self.exit_code = EXIT_DEVICE_LOST
            self._stop_serving()
        loop.call_soon_threadsafe(stop)

    def _stop_serving(self) -> None:
        """Make the REST server exit (which ends `_serve_all`) and drain gRPC; on the event loop."""
        rest_server = getattr(self, "_rest_server", None)
        if rest_server is not None:
            request_rest_exit(rest_server)
        self._begin_drain()

    def _begin_drain(self) -> None:
        """Stop taking jobs and stop the gRPC server gracefully; safe to call from a signal handler and
        more than once."""
        if self.jobs is not None:
            self.jobs.stop(self.grace_period)
        if self._grpc_server is None or self._draining:
            return
        self._draining = True
        grpc_server = self._grpc_server
        loop = self._loop
        assert loop is not None
        loop.call_soon_threadsafe(lambda: loop.create_task(grpc_server.stop(signal.SIGTERM)))


def _exit_even_if_a_forward_pass_runs(exit_code: int) -> None:
    """Arm a daemon timer that ends the process `EXIT_WATCHDOG_SECONDS` from now with `exit_code`.

    The drain is over (its grace period spent); a forward pass still running on a device thread (a 30 s
    face enhancement on a CPU) would otherwise keep the process alive until it ends, since the
    interpreter joins executor threads at exit, and Kubernetes would have to SIGKILL it. A normal exit
    comes first and the timer dies with the process."""
    def end() -> None:
        logger.warning("a forward pass was still running %.0f s after the drain; exiting without it",
                       EXIT_WATCHDOG_SECONDS)
        logging.shutdown()  # flush the log handlers: os._exit skips them
        os._exit(exit_code)

    timer = threading.Timer(EXIT_WATCHDOG_SECONDS, end)
    timer.daemon = True
    timer.start()


async def _on_daemon_thread(work: Callable[[], T], name: str) -> T:
    """`work()` on a daemon thread of its own. Loading weights cannot be interrupted: when the server
    stops while a model still loads (SIGTERM during start-up), the load is abandoned rather than
    holding up the exit (an executor's threads are joined at exit; a daemon thread is not)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            outcome: tuple[T | None, BaseException | None] = (work(), None)
        except BaseException as error:  # noqa: BLE001 - handed to the waiting coroutine
            outcome = (None, error)
        with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


def freeze_startup_heap() -> int:
    """Move every object alive after start-up (the imported libraries, the loaded models: ~0.5 million)
    out of the garbage collector's reach, once; returns how many. Without it each full collection walks
    them all and stops every Python thread for a noticeable pause, delaying the requests and job submissions in
    flight (docs/performance.md, "What the server's defaults rest on"); after it a collection
    walks only what serving allocated since. Costs nothing now: each model's load ended with a full
    collection before it became ready (`ModelRuntime.load`), so no garbage is frozen."""
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.debug("start-up heap frozen: %d objects no longer scanned by the garbage collector", frozen)
    return frozen
