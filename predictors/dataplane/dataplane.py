"""The data plane both transports share: model lookup (by name, and version: models here are unversioned), server
and model metadata, readiness, and the decoding of REST bodies.

It is KServe's `DataPlane` (whose `infer` runs a model's preprocess -> predict -> postprocess hooks) with these
differences: a v1 body is an upload (multipart/form-data or a raw image) or else JSON whatever its Content-Type
says; a v2 body is parsed by our codec (JSON, or the binary tensor data extension keeping raw bytes); a request
never triggers a model load; server readiness means every model is ready; metadata names this server and only the
extensions it implements. CloudEvents, which KServe's decoder also accepts, are not part of this server's
protocols (docs/protocol.md).
"""

from __future__ import annotations

from importlib import metadata as package_metadata
from typing import Any

import orjson
from kserve.constants.constants import PredictorProtocol
from kserve.model import BaseKServeModel
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferRequest

from predictors.codecs import forms
from predictors.codecs.v2 import parse_binary_request
from predictors.dataplane.context import request_query
from predictors.errors import InvalidInput, ModelNotFound, ModelNotReady

INFERENCE_HEADER_LENGTH = "inference-header-content-length"
#: the server metadata's `name` (`GET /v2`, gRPC ServerMetadata)
SERVER_NAME = "vision-predictors"
#: the protocol extensions this server implements: Triton's binary tensor data extension (REST)
EXTENSIONS = ("binary_tensor_data",)
#: a model's `platform` in its metadata (`<project>_<format>`, as the Open Inference Protocol names them)
PLATFORM = "pytorch_modelscope"


def server_version() -> str:
    """This server's version: that of the installed package."""
    try:
        return package_metadata.version("vision-predictors")
    except package_metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def unknown_model(name: str) -> ModelNotFound:
    return ModelNotFound(f"model '{name}' is not served here; see GET /v2/models")


def unknown_version(name: str, version: str) -> ModelNotFound:
    return ModelNotFound(f"model '{name}' has no version '{version}': models here are unversioned (leave the "
                         "version out: /v2/models/<name>/..., or an empty version over gRPC)")


class PredictorDataPlane(DataPlane):
    def model_of(self, name: str, version: str | None = None) -> BaseKServeModel:
        """The served model `name` (ready or not); 404 MODEL_NOT_FOUND for an unknown name or any version."""
        model = self.model_registry.get_model(name)
        if model is None:
            raise unknown_model(name)
        if version:
            raise unknown_version(name, version)
        return model

    async def get_model(self, name: str) -> BaseKServeModel:
        model = self.model_of(name)
        if not model.ready:
            raise ModelNotReady(f"model '{name}' is still loading")
        return model

    def get_model_from_registry(self, name: str) -> BaseKServeModel:
        return self.model_of(name)

    def model_names(self) -> list[str]:
        return list(self.model_registry.get_models())

    def metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": server_version(), "extensions": list(EXTENSIONS)}

    async def model_metadata(self, model_name: str, model_version: str | None = None) -> dict[str, Any]:
        """The protocol's model metadata; no ``versions`` (the field is optional, and no version may be asked
        for)."""
        model = self.model_of(model_name, model_version)
        return {"name": model_name, "platform": PLATFORM, "inputs": model.get_input_types(),
                "outputs": model.get_output_types()}

    async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False) -> bool:
        return bool(self.model_of(model_name).ready)

    async def ready(self) -> bool:
        models = self.model_registry.get_models().values()
        return bool(models) and all(model.ready for model in models)

    def decode(self, body: Any, headers: dict[str, Any], protocol_version: str = PredictorProtocol.REST_V1.value,
               model_name: str | None = None) -> tuple[Any, dict[str, Any]]:
        """A REST body, decoded for the model's codec step: v2 -> `InferRequest` (`decode_inference_request`); v1 ->
        a `forms.Upload` for a multipart/form-data or raw image body, else the parsed JSON.

        A v1 body that is not an upload is parsed as JSON whatever its Content-Type claims: `curl -d '{...}'` sends
        form-urlencoded, as KServe's own examples do. One that is not JSON either is refused by its Content-Type
        (`forms.not_json`).
        """
        if protocol_version.lower() == PredictorProtocol.REST_V2.value:
            assert model_name is not None
            return self.decode_inference_request(body, headers, model_name), {}
        content_type = headers.get("content-type")
        query = request_query.get()
        upload = forms.upload_of(body, content_type, query)
        if upload is not None:
            return upload, {}
        if query:  # it would be ignored: a JSON body carries its parameters itself
            raise InvalidInput("a query string goes with an upload (multipart/form-data or an image body); a JSON "
                               'body gives its parameters in "parameters"')
        try:
            return orjson.loads(body), {}
        except orjson.JSONDecodeError as error:
            raise forms.not_json(content_type, error) from None

    def decode_inference_request(self, body: bytes, headers: dict[str, Any], model_name: str) -> InferRequest:
        """A v2 body: JSON, or with ``Inference-Header-Content-Length`` a JSON header and binary tensor data."""
        length = headers.get(INFERENCE_HEADER_LENGTH)
        if length is None:
            return parse_binary_request(body, len(body), model_name)
        try:
            json_length = int(length)
        except ValueError:
            raise InvalidInput(f"Inference-Header-Content-Length must be an integer, got {length!r}") from None
        return parse_binary_request(body, json_length, model_name)
