"""Every reliance on private internals of the pinned KServe, FastAPI and prometheus-client, in one module.

The server needs a few things these libraries do not offer publicly; each is wrapped here, and only here, so
that upgrading one of them means reading this file and `tests/unit/server/test_kserve_compat.py`, which
fails with a message naming the wrapper to update when an internal it relies on changes:

- KServe's `RESTServer` keeps its uvicorn server in `_server`, an instance of the private `_RefreshingServer`
  (uvicorn + TLS certificate refresh). We subclass it to learn when uvicorn begins its graceful shutdown, put
  our instance in its place, and set `should_exit` to stop it when a model fails to load.
- KServe's `RESTServer.create_application` installs its middlewares through the private `_add_middlewares`:
  timing_asgi's `TimingMiddleware` (per request: two `getrusage` calls, a scan of every route for the
  request's name and a log line formatted for the `kserve.trace` logger, which we silence) and, with an
  `access_log_format` (we set none), asgi-logger's access log. `EdgeOnlyRESTServer` installs neither: our
  edge (`RequestContextMiddleware`) measures and logs every request.
- KServe's `GRPCServer.start` hard-codes its interceptors and message-size options: `serve_grpc` is a copy of
  it (kserve 0.21.0) that takes both, and uses the attributes `_port`, `_data_plane`,
  `_model_repository_extension` and `_server` (the last one is what `GRPCServer.stop` stops).
- KServe's `InferInput` has no public way to carry raw binary-extension bytes: its own parser sets
  `_raw_data`, and `as_numpy` reads it; we do the same for the binary v2 bodies we parse ourselves.
- FastAPI's native telemetry settings live in `app._telemetry` (KServe builds the app, so we cannot pass
  `FastAPI(telemetry=...)`).
- prometheus-client offers no public read of one labelled child's value except through a registry scan;
  `metric_value` reads the child's `_value`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeAlias

from grpc import aio
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferInput
from kserve.protocol.rest.server import RESTServer, _RefreshingServer

logger = logging.getLogger(__name__)

#: KServe's uvicorn server class (TLS certificate refresh); subclass it to hook uvicorn's exit.
RefreshingUvicorn: TypeAlias = _RefreshingServer


def install_uvicorn(rest_server: RESTServer, server: RefreshingUvicorn) -> None:
    """Make KServe's `RESTServer` run `server` (built from `rest_server.config`) instead of its own."""
    rest_server._server = server


class EdgeOnlyRESTServer(RESTServer):
    """KServe's `RESTServer` without KServe's own per-request middlewares (see the module's docstring)."""

    def _add_middlewares(self, app: Any) -> None:
        if self.access_log_format:
            raise ValueError("access_log_format is not supported: the server's edge writes the access log")


def request_rest_exit(rest_server: RESTServer) -> None:
    """Ask the REST server's uvicorn to shut down gracefully (as a signal would)."""
    rest_server._server.should_exit = True


async def serve_grpc(grpc_server: GRPCServer, *, max_workers: int, interceptors: Sequence[Any],
                     options: Sequence[tuple[str, Any]]) -> None:
    """`GRPCServer.start` (kserve 0.21.0) with our interceptors and options instead of KServe's fixed ones;
    returns when the server has terminated (`grpc_server.stop(...)` stops it)."""
    server = aio.server(ThreadPoolExecutor(max_workers=max_workers), interceptors=tuple(interceptors),
                        options=list(options))
    grpc_server._server = server
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(grpc_server._data_plane, grpc_server._model_repository_extension), server
    )
    server.add_insecure_port(f"[::]:{grpc_server._port}")
    logger.info("gRPC v2 listening on port %d", grpc_server._port)
    await server.start()
    await server.wait_for_termination()


def set_raw_data(infer_input: InferInput, data: bytes) -> None:
    """Attach binary-extension bytes to a KServe `InferInput` (as KServe's own binary parser does)."""
    infer_input._raw_data = data


def raw_data(infer_input: InferInput) -> bytes | None:
    """The binary-extension bytes of a KServe `InferInput`, None when it carries JSON `data` instead."""
    raw: bytes | None = infer_input._raw_data
    return raw


def fastapi_telemetry_config(app: Any) -> dict[str, Any] | None:
    """The mutable native-telemetry settings of a FastAPI app; None for a FastAPI without them."""
    config = getattr(app, "_telemetry", None)
    return config if isinstance(config, dict) else None


def metric_value(child: Any) -> float:
    """The current value of one labelled prometheus-client Counter or Gauge child."""
    return float(child._value.get())
