"""Every reliance on private internals of the pinned KServe, FastAPI and prometheus-client, in one module.

The server needs a few things these libraries do not offer publicly; each is wrapped here, and only here, so
that upgrading one of them means reading this file and `tests/unit/server/test_kserve_compat.py`, which
fails with a message naming the wrapper to update when an internal it relies on changes:

- KServe's `RESTServer` keeps its uvicorn server in `_server`, an instance of the private `_RefreshingServer`
  (uvicorn + TLS certificate refresh). We subclass it to learn when uvicorn begins its graceful shutdown, put
  our instance in its place, and set `should_exit` to stop it when a model fails to load.
- KServe's `GRPCServer.start` hard-codes its servicer (with the model repository RPCs), interceptors and
  message-size options: `serve_grpc` is a copy of it (kserve 0.21.0) that takes all three, and uses the
  attributes `_port` and `_server` (the latter is what `GRPCServer.stop` stops).
- KServe's `InferInput` has no public way to carry raw binary-extension bytes: its own parser sets
  `_raw_data`, and `as_numpy` reads it; we do the same for the binary v2 bodies we parse ourselves.
- KServe's copy of the gRPC proto (`grpc_predict_v2_pb2`) is older than the Open Inference Protocol's: its
  `InferParameter` lacks `double_param` (4) and `uint64_param` (5), which protobuf then keeps as unknown
  fields. `parameter_values` reads them from there (KServe's own `to_http_parameters` drops them silently).
- FastAPI's native telemetry settings live in `app._telemetry` (KServe builds the app, so we cannot pass
  `FastAPI(telemetry=...)`).
- prometheus-client offers no public read of one labelled child's value except through a registry scan;
  `metric_value` reads the child's `_value`.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeAlias

import grpc
from google.protobuf.unknown_fields import UnknownFieldSet
from grpc import aio
from kserve.protocol.grpc.grpc_predict_v2_pb2 import InferParameter
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.infer_type import InferInput
from kserve.protocol.rest.server import RESTServer, _RefreshingServer

from predictors.errors import InvalidInput

logger = logging.getLogger(__name__)

#: KServe's uvicorn server class (TLS certificate refresh); subclass it to hook uvicorn's exit.
RefreshingUvicorn: TypeAlias = _RefreshingServer


def install_uvicorn(rest_server: RESTServer, server: RefreshingUvicorn) -> None:
    """Make KServe's `RESTServer` run `server` (built from `rest_server.config`) instead of its own."""
    rest_server._server = server


def request_rest_exit(rest_server: RESTServer) -> None:
    """Ask the REST server's uvicorn to shut down gracefully (as a signal would)."""
    rest_server._server.should_exit = True


async def serve_grpc(grpc_server: GRPCServer, *, max_workers: int, handler: grpc.GenericRpcHandler,
                     interceptors: Sequence[Any], options: Sequence[tuple[str, Any]]) -> None:
    """`GRPCServer.start` (kserve 0.21.0) with our service, interceptors and options instead of KServe's fixed
    ones; returns when the server has terminated (`grpc_server.stop(...)` stops it)."""
    server = aio.server(ThreadPoolExecutor(max_workers=max_workers), handlers=(handler,),
                        interceptors=tuple(interceptors), options=list(options))
    grpc_server._server = server
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


#: `InferParameter` fields missing from KServe's proto: field number -> (name, wire type)
_DOUBLE_PARAM, _UINT64_PARAM = 4, 5
_WIRE_VARINT, _WIRE_FIXED64 = 0, 1


def parameter_values(parameters: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """Request parameters as plain values: a REST mapping as it is; a gRPC map of `InferParameter` with each
    value read from whichever of the protocol's five kinds is set (bool, int64, string, double, uint64).
    A gRPC parameter with no value set is INVALID_INPUT."""
    if not parameters:
        return {}
    values: dict[str, Any] = {}
    for key, value in parameters.items():
        if not isinstance(value, InferParameter):
            values[key] = value
            continue
        kind = value.WhichOneof("parameter_choice")
        if kind is not None:
            values[key] = getattr(value, kind)
            continue
        for unknown in UnknownFieldSet(value):
            if unknown.field_number == _DOUBLE_PARAM and unknown.wire_type == _WIRE_FIXED64:
                values[key] = struct.unpack("<d", struct.pack("<Q", unknown.data))[0]
            elif unknown.field_number == _UINT64_PARAM and unknown.wire_type == _WIRE_VARINT:
                values[key] = int(unknown.data)
        if key not in values:
            raise InvalidInput(f"{where}.{key} has no value (set one of bool_param, int64_param, string_param, "
                               "double_param, uint64_param)")
    return values


def fastapi_telemetry_config(app: Any) -> dict[str, Any] | None:
    """The mutable native-telemetry settings of a FastAPI app; None for a FastAPI without them."""
    config = getattr(app, "_telemetry", None)
    return config if isinstance(config, dict) else None


def metric_value(child: Any) -> float:
    """The current value of one labelled prometheus-client Counter or Gauge child."""
    return float(child._value.get())
