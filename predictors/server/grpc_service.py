"""The gRPC transport: the Open Inference Protocol's six RPCs of ``inference.GRPCInferenceService``, each a thin
adapter onto the data plane. Nothing else is registered: KServe's model repository RPCs (``RepositoryModelLoad``,
``RepositoryModelUnload``) and any other method are answered UNIMPLEMENTED by grpc itself.

The messages are KServe's compiled copy of the protocol's proto (the same field numbers; `kserve_compat` reads the
two `InferParameter` kinds that copy lacks). Errors are raised as `PredictorError`s; the edge interceptor
(`grpc_interceptor.py`) turns them into statuses.
"""

from __future__ import annotations

from typing import Any

import grpc
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferRequest

from predictors.codecs.v2 import V2Response
from predictors.dataplane.dataplane import PredictorDataPlane
from predictors.errors import InvalidInput

SERVICE = "inference.GRPCInferenceService"
#: every RPC served: name -> (request message, response message)
RPCS: dict[str, tuple[Any, Any]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
}


class InferenceService:
    def __init__(self, dataplane: PredictorDataPlane) -> None:
        self.dataplane = dataplane

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=await self.dataplane.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:  # noqa: N802
        return pb.ModelReadyResponse(ready=bool(self.dataplane.model_of(request.name, request.version).ready))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,  # noqa: N802
                             context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self.dataplane.metadata())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,  # noqa: N802
                            context: Any) -> pb.ModelMetadataResponse:
        metadata = await self.dataplane.model_metadata(request.name, request.version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=metadata["name"], platform=metadata["platform"],
            inputs=[tensor(**spec) for spec in metadata["inputs"]],
            outputs=[tensor(**spec) for spec in metadata["outputs"]],
        )

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:  # noqa: N802
        self.dataplane.model_of(request.model_name, request.model_version)
        await self.dataplane.get_model(request.model_name)  # UNAVAILABLE while it loads, as over REST
        _check_contents(request)
        headers = {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}
        response, _ = await self.dataplane.infer(request.model_name, InferRequest.from_grpc(request), headers)
        assert isinstance(response, V2Response)
        return response.to_grpc()


def _check_contents(request: pb.ModelInferRequest) -> None:
    """raw_input_contents: one per input, and then no input may carry typed contents (the proto's rule)."""
    raw = len(request.raw_input_contents)
    if not raw:
        return
    if raw != len(request.inputs):
        raise InvalidInput(f"{raw} raw_input_contents for {len(request.inputs)} inputs: give one per input, in "
                           "the order of 'inputs'")
    for tensor in request.inputs:
        if tensor.HasField("contents"):
            raise InvalidInput(f"input '{tensor.name}' has contents although raw_input_contents is used")


def generic_handler(service: InferenceService) -> grpc.GenericRpcHandler:
    """The RPCs of `RPCS`, and only those, as one grpc handler."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(getattr(service, name), request_deserializer=request.FromString,
                                                  response_serializer=response.SerializeToString)
        for name, (request, response) in RPCS.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)
