"""The gRPC API against the Open Inference Protocol's own proto (`open_inference_grpc.proto`, pinned), through a client
compiled from it at test time (`tests/support/oip_grpc.py`): every RPC the proto declares, every `InferParameter`
kind, raw and typed tensor contents, `id`, versions, and the same answers and error codes as REST."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from tests.conftest import encode, sample_image
from tests.support.oip_grpc import OipClient, OipProto, compile_proto
from tests.support.pinned import oip_spec
from tests.support.server import ServerProcess

IMAGE = encode(sample_image(4), "JPEG")
MODEL = "general-recognition"
called: set[str] = set()


@pytest.fixture(scope="module")
def proto() -> OipProto:
    return compile_proto(oip_spec("open_inference_grpc.proto"))


@pytest.fixture(scope="module")
def client(proto: OipProto, server: ServerProcess) -> Iterator[OipClient]:
    client = OipClient(proto, server.grpc_target)
    yield client
    client.close()


def call(client: OipClient, rpc: str, request: Any = None, **kwargs: Any) -> Any:
    called.add(rpc)
    return client.call(rpc, request, **kwargs)


def error_of(client: OipClient, rpc: str, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call(client, rpc, request)
    error: Any = raised.value
    return error.code(), error.details()


def infer_request(proto: OipProto, *, raw: bool = True, count: int = 1, **fields: Any) -> Any:
    tensor = proto.messages["ModelInferRequest"].InferInputTensor(name="image", datatype="BYTES", shape=[count])
    request = proto.message("ModelInferRequest", model_name=MODEL, inputs=[tensor], **fields)
    if raw:
        request.raw_input_contents.append(b"".join(struct.pack("<I", len(IMAGE)) + IMAGE for _ in range(count)))
    else:
        request.inputs[0].contents.bytes_contents.extend([IMAGE] * count)
    return request


def parameter(proto: OipProto, **kind: Any) -> Any:
    return proto.message("InferParameter", **kind)


def outputs_of(response: Any) -> dict[str, np.ndarray]:
    """Each output as numpy, from raw or typed contents."""
    decoded = {}
    for index, output in enumerate(response.outputs):
        shape = list(output.shape)
        if response.raw_output_contents:
            raw = response.raw_output_contents[index]
            if output.datatype == "BYTES":
                values, offset = [], 0
                while offset < len(raw):
                    (size,) = struct.unpack_from("<I", raw, offset)
                    values.append(raw[offset + 4:offset + 4 + size])
                    offset += 4 + size
                decoded[output.name] = np.array(values, dtype=object).reshape(shape)
            else:
                decoded[output.name] = np.frombuffer(raw, dtype="<f4").reshape(shape)
        else:
            contents = output.contents
            values = list(contents.bytes_contents) if output.datatype == "BYTES" else list(contents.fp32_contents)
            decoded[output.name] = np.array(values, dtype=object if output.datatype == "BYTES" else np.float32) \
                .reshape(shape)
    return decoded


def test_health_and_metadata_rpcs(proto: OipProto, client: OipClient, server: ServerProcess) -> None:
    assert call(client, "ServerLive").live is True
    assert call(client, "ServerReady").ready is True
    assert call(client, "ModelReady", proto.message("ModelReadyRequest", name=MODEL)).ready is True
    metadata = call(client, "ServerMetadata")
    assert (metadata.name, list(metadata.extensions)) == ("vision-predictors", ["binary_tensor_data"])
    rest = httpx.get(f"{server.url}/v2").json()
    assert metadata.version == rest["version"]
    model = call(client, "ModelMetadata", proto.message("ModelMetadataRequest", name=MODEL))
    assert model.name == MODEL and list(model.versions) == [] and model.platform == "pytorch_modelscope"
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("image", "BYTES", [-1])]
    assert [(t.name, t.datatype) for t in model.outputs] == [("labels", "BYTES"), ("scores", "FP32")]


def test_raw_in_raw_out_and_typed_in_typed_out_agree_with_rest(proto: OipProto, client: OipClient,
                                                                server: ServerProcess) -> None:
    top_k = {"top_k": parameter(proto, int64_param=3)}
    raw = call(client, "ModelInfer", infer_request(proto, raw=True, count=2, parameters=top_k))
    typed = call(client, "ModelInfer", infer_request(proto, raw=False, count=2, parameters=top_k))
    assert len(raw.raw_output_contents) == 2 and not any(o.HasField("contents") for o in raw.outputs)
    assert list(typed.raw_output_contents) == [] and all(o.HasField("contents") for o in typed.outputs)
    raw_outputs, typed_outputs = outputs_of(raw), outputs_of(typed)
    rest = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", timeout=120, json={
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                    "data": [base64.b64encode(IMAGE).decode()] * 2}], "parameters": {"top_k": 3}}).json()
    rest_outputs = {o["name"]: o for o in rest["outputs"]}
    for decoded in (raw_outputs, typed_outputs):
        assert decoded["labels"].shape == (2, 3)
        assert [x.decode() for x in decoded["labels"].reshape(-1)] == rest_outputs["labels"]["data"]
        assert np.allclose(decoded["scores"].reshape(-1).astype(float), rest_outputs["scores"]["data"])
    assert raw.model_name == MODEL and raw.model_version == ""


def test_the_request_id_is_echoed(proto: OipProto, client: OipClient) -> None:
    assert call(client, "ModelInfer", infer_request(proto, id="grpc-id-9")).id == "grpc-id-9"
    assert call(client, "ModelInfer", infer_request(proto)).id == ""


@pytest.mark.parametrize(("name", "kind", "accepted"), [
    ("top_k", {"int64_param": 2}, True),
    ("top_k", {"uint64_param": 2}, True),
    ("timeout_ms", {"double_param": 60000.5}, True),
    ("timeout_ms", {"int64_param": 60000}, True),
    ("binary_data_output", {"bool_param": True}, True),
    ("top_k", {"string_param": "2"}, False),  # typed strictly: a string is not an integer
    ("top_k", {"double_param": 2.0}, False),
    ("top_k", {"bool_param": True}, False),
    ("timeout_ms", {"string_param": "soon"}, False),
    ("no_such_parameter", {"int64_param": 1}, False),
    ("top_k", {}, False),  # no value at all
])
def test_every_infer_parameter_kind(proto: OipProto, client: OipClient, name: str, kind: dict[str, Any],
                                    accepted: bool) -> None:
    request = infer_request(proto, parameters={name: parameter(proto, **kind)})
    if accepted:
        response = call(client, "ModelInfer", request)
        if name == "top_k":
            assert list(response.outputs[0].shape) == [1, 2]
        return
    code, details = error_of(client, "ModelInfer", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("[INVALID_INPUT]")


def test_versions_are_not_found_over_grpc_as_over_rest(proto: OipProto, client: OipClient) -> None:
    for rpc, request in (("ModelInfer", infer_request(proto, model_version="1")),
                         ("ModelReady", proto.message("ModelReadyRequest", name=MODEL, version="1")),
                         ("ModelMetadata", proto.message("ModelMetadataRequest", name=MODEL, version="1"))):
        code, details = error_of(client, rpc, request)
        assert code == grpc.StatusCode.NOT_FOUND and "[MODEL_NOT_FOUND]" in details and "unversioned" in details
    code, _ = error_of(client, "ModelMetadata", proto.message("ModelMetadataRequest", name="nope"))
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("broken", ["two_raw_for_one_input", "raw_and_contents", "unknown_input", "wrong_datatype"])
def test_inconsistent_requests_are_invalid_argument_like_rest(proto: OipProto, client: OipClient,
                                                              broken: str) -> None:
    request = infer_request(proto)
    if broken == "two_raw_for_one_input":
        request.raw_input_contents.append(b"")
    elif broken == "raw_and_contents":
        request.inputs[0].contents.bytes_contents.append(IMAGE)
    elif broken == "unknown_input":
        request.inputs[0].name = "picture"
    else:
        request.inputs[0].datatype = "FP32"
    code, details = error_of(client, "ModelInfer", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("[INVALID_INPUT]")


def test_kserves_model_repository_rpcs_are_not_served(client: OipClient) -> None:
    for method in ("RepositoryModelLoad", "RepositoryModelUnload", "RepositoryIndex"):
        with pytest.raises(grpc.RpcError) as raised:
            client.raw(f"/inference.GRPCInferenceService/{method}", b"\n\x13general-recognition")
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
    assert call(client, "ServerReady").ready is True  # still serving everything


@pytest.mark.after_all
def test_every_rpc_of_the_proto_was_called(proto: OipProto) -> None:
    assert called == set(proto.rpcs), f"not called: {set(proto.rpcs) - called}"
