"""The private internals `predictors.kserve_compat` relies on are still there, and still behave.

When one of these fails after upgrading KServe, FastAPI or prometheus-client, the message names the wrapper
in `kserve_compat.py` to update; nothing else in the package touches these internals.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import struct

import grpc
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.infer_type import InferInput, serialize_byte_tensor
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer
from prometheus_client import CollectorRegistry, Counter, Gauge

from devtools.procs import free_port
from predictors import kserve_compat
from predictors.dataplane.dataplane import PredictorDataPlane
from predictors.errors import InvalidInput
from predictors.server.grpc_service import InferenceService, generic_handler

#: sha256 of `inspect.getsource(GRPCServer.start)` in kserve 0.21.0, the version `serve_grpc` copies.
GRPC_START_SHA256 = "f4ea7b4eb6f0d9f7ac4947c7bda31531f4bf870529f9de0964a2dad2f6a7fb5e"


def _dataplane() -> tuple[DataPlane, ModelRepositoryExtension]:
    repository = ModelRepository()
    return DataPlane(model_registry=repository), ModelRepositoryExtension(model_registry=repository)


def test_rest_server_runs_a_replaceable_refreshing_uvicorn() -> None:
    dataplane, extension = _dataplane()
    rest = RESTServer("kserve.model_server:app", dataplane, extension, free_port())
    assert isinstance(getattr(rest, "_server", None), kserve_compat.RefreshingUvicorn), (
        "KServe's RESTServer no longer keeps a _RefreshingServer in `_server`: update install_uvicorn, "
        "request_rest_exit and RefreshingUvicorn in predictors/kserve_compat.py")
    assert issubclass(kserve_compat.RefreshingUvicorn, uvicorn.Server)
    ours = kserve_compat.RefreshingUvicorn(rest.config)
    kserve_compat.install_uvicorn(rest, ours)
    assert not ours.should_exit
    kserve_compat.request_rest_exit(rest)
    assert ours.should_exit, "request_rest_exit did not reach the uvicorn server RESTServer.start serves"
    assert "self._server.serve()" in inspect.getsource(RESTServer.start), (
        "KServe's RESTServer.start no longer serves `self._server`: update install_uvicorn in kserve_compat.py")


def test_grpc_start_is_the_version_serve_grpc_copies() -> None:
    digest = hashlib.sha256(inspect.getsource(GRPCServer.start).encode()).hexdigest()
    assert digest == GRPC_START_SHA256, (
        "KServe's GRPCServer.start changed: port the change into serve_grpc in "
        f"predictors/kserve_compat.py, then set GRPC_START_SHA256 here to {digest}")


def test_serve_grpc_serves_the_given_handler_and_stops_with_grpc_server_stop() -> None:
    dataplane, extension = _dataplane()
    port = free_port()
    grpc_server = GRPCServer(port, dataplane, extension, kwargs={}, grace_period=1)
    seen: list[str] = []

    class Recording(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
            seen.append(handler_call_details.method)
            return await continuation(handler_call_details)

    async def scenario() -> bool:
        handler = generic_handler(InferenceService(PredictorDataPlane(model_registry=ModelRepository())))
        serving = asyncio.create_task(kserve_compat.serve_grpc(
            grpc_server, max_workers=1, handler=handler, interceptors=(Recording(),),
            options=[("grpc.max_receive_message_length", 1024)]))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
            live = await stub.ServerLive(grpc_predict_v2_pb2.ServerLiveRequest(), timeout=10,
                                         wait_for_ready=True)
        await grpc_server.stop()
        await asyncio.wait_for(serving, timeout=10)
        return bool(live.live)

    assert asyncio.run(scenario())
    assert seen == ["/inference.GRPCInferenceService/ServerLive"]


def test_raw_data_is_what_infer_input_decodes() -> None:
    tensor = InferInput(name="image", shape=[2], datatype="BYTES")
    assert kserve_compat.raw_data(tensor) is None
    encoded = serialize_byte_tensor(np.array([b"ab", b"c"], dtype=object)).item()
    kserve_compat.set_raw_data(tensor, encoded)
    assert kserve_compat.raw_data(tensor) == encoded
    assert list(tensor.as_numpy()) == [b"ab", b"c"], (
        "KServe's InferInput no longer decodes `_raw_data`: update set_raw_data/raw_data in kserve_compat.py")


def test_fastapi_telemetry_config_is_the_apps_live_settings() -> None:
    app = FastAPI()
    config = kserve_compat.fastapi_telemetry_config(app)
    assert config is not None, "FastAPI has no `_telemetry` settings: update fastapi_telemetry_config"
    assert {"exclude", "operation_spans"} <= set(config), (
        f"FastAPI's telemetry settings are now {sorted(config)}: update limit_fastapi_telemetry")
    assert kserve_compat.fastapi_telemetry_config(object()) is None


@pytest.mark.parametrize("kind", [Counter, Gauge])
def test_metric_value_agrees_with_the_registry(kind: type) -> None:
    registry = CollectorRegistry()
    metric = kind("compat_probe", "probe", ["model"], registry=registry)
    metric.labels("m").inc(3)
    sample = "compat_probe_total" if kind is Counter else "compat_probe"
    assert kserve_compat.metric_value(metric.labels("m")) == registry.get_sample_value(sample, {"model": "m"}) == 3


def test_kserves_infer_parameter_still_lacks_the_double_and_uint64_kinds() -> None:
    """`parameter_values` reads double_param and uint64_param from protobuf's unknown fields because KServe's copy of
    the proto has neither; once it has them, they arrive as ordinary fields and the workaround can go."""
    fields = set(grpc_predict_v2_pb2.InferParameter.DESCRIPTOR.fields_by_name)
    assert fields == {"bool_param", "int64_param", "string_param"}, (
        f"KServe's InferParameter now has {sorted(fields)}: drop the unknown-field reading from parameter_values "
        "in predictors/kserve_compat.py")


@pytest.mark.parametrize(("encoded", "value"), [
    (bytes([(4 << 3) | 1]) + struct.pack("<d", 2.5), 2.5),  # double_param
    (bytes([(5 << 3) | 0, 0x96, 0x01]), 150),  # uint64_param (varint)
    (grpc_predict_v2_pb2.InferParameter(int64_param=-3).SerializeToString(), -3),
    (grpc_predict_v2_pb2.InferParameter(bool_param=True).SerializeToString(), True),
    (grpc_predict_v2_pb2.InferParameter(string_param="png").SerializeToString(), "png"),
])
def test_parameter_values_reads_every_kind_of_the_protocol(encoded: bytes, value: object) -> None:
    request = grpc_predict_v2_pb2.ModelInferRequest()
    request.parameters["p"].MergeFrom(grpc_predict_v2_pb2.InferParameter.FromString(encoded))
    parsed = kserve_compat.parameter_values(request.parameters, "parameters")
    assert parsed == {"p": value} and type(parsed["p"]) is type(value)


def test_a_parameter_without_a_value_is_invalid_input() -> None:
    request = grpc_predict_v2_pb2.ModelInferRequest()
    request.parameters["empty"].CopyFrom(grpc_predict_v2_pb2.InferParameter())
    with pytest.raises(InvalidInput, match="parameters.empty has no value"):
        kserve_compat.parameter_values(request.parameters, "parameters")
