"""A gRPC client made at test time from the Open Inference Protocol's own proto (`open_inference_grpc.proto`).

grpcio-tools compiles the pinned proto into a descriptor set in a temporary directory; the messages are built
from it in a descriptor pool of their own and every RPC is called by the names the proto's service declares.
Nothing is generated into the default protobuf pool, where KServe's and tritonclient's copies of the same package
(`inference`) already live and would clash (see the Makefile's note on the two pytest processes).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

SERVICE = "inference.GRPCInferenceService"


@dataclass
class OipProto:
    """The proto's messages (by short name) and RPCs (name -> (request class, response class))."""

    messages: dict[str, Any]
    rpcs: dict[str, tuple[Any, Any]]

    def message(self, type_name: str, /, **fields: Any) -> Any:
        return self.messages[type_name](**fields)


def compile_proto(proto: Path) -> OipProto:
    """Compile `proto` with grpcio-tools' protoc into a private descriptor pool."""
    with tempfile.TemporaryDirectory(prefix="oip-proto-") as directory:
        descriptor_set = Path(directory) / "oip.desc"
        status = protoc.main(["grpc_tools.protoc", f"-I{proto.parent}", f"--descriptor_set_out={descriptor_set}",
                              "--include_imports", proto.name])
        if status != 0:
            raise RuntimeError(f"protoc failed ({status}) on {proto}")
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    package = files.file[-1].package
    messages = {}
    for file in files.file:
        for message in file.message_type:
            messages[message.name] = message_factory.GetMessageClass(
                pool.FindMessageTypeByName(f"{package}.{message.name}"))
    service = pool.FindServiceByName(SERVICE)
    rpcs = {method.name: (message_factory.GetMessageClass(method.input_type),
                          message_factory.GetMessageClass(method.output_type)) for method in service.methods}
    return OipProto(messages, rpcs)


class OipClient:
    """Calls the RPCs of `OipProto` on a channel; `call` returns the response message or raises `grpc.RpcError`."""

    def __init__(self, proto: OipProto, target: str) -> None:
        self.proto = proto
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)])
        self._stubs = {
            name: self.channel.unary_unary(f"/{SERVICE}/{name}", request_serializer=request.SerializeToString,
                                           response_deserializer=response.FromString)
            for name, (request, response) in proto.rpcs.items()
        }

    def call(self, rpc: str, request: Any | None = None, *, metadata: tuple[tuple[str, str], ...] = (),
             timeout: float = 60.0) -> Any:
        request_class, _ = self.proto.rpcs[rpc]
        return self._stubs[rpc](request if request is not None else request_class(), metadata=metadata,
                                timeout=timeout)

    def raw(self, method: str, payload: bytes, timeout: float = 10.0) -> bytes:
        """Call any method path (`/package.Service/Method`) with raw bytes: for methods the proto does not have."""
        stub = self.channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return stub(payload, timeout=timeout)

    def close(self) -> None:
        self.channel.close()
