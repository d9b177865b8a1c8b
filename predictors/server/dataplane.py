"""KServe's DataPlane with four changes: a v1 body is an upload (multipart/form-data or a raw image) or else JSON
whatever its Content-Type says, binary v2 bodies keep raw bytes, a request never triggers a model load, and server
readiness means every model is ready."""

from __future__ import annotations

from typing import Any

import orjson
from cloudevents.sdk.converters.util import has_binary_headers
from kserve.constants.constants import PredictorProtocol
from kserve.model import BaseKServeModel
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest.v2_datamodels import InferenceRequest

from predictors.codecs import forms
from predictors.codecs.v2 import parse_binary_request
from predictors.errors import InvalidInput, ModelNotFound, ModelNotReady
from predictors.server.middleware import request_query

INFERENCE_HEADER_LENGTH = "inference-header-content-length"


class PredictorDataPlane(DataPlane):
    async def get_model(self, name: str) -> BaseKServeModel:
        model = self.model_registry.get_model(name)
        if model is None:
            raise ModelNotFound(f"model '{name}' is not served here; see GET /v2/models")
        if not model.ready:
            raise ModelNotReady(f"model '{name}' is still loading")
        return model

    def get_model_from_registry(self, name: str) -> BaseKServeModel:
        model = self.model_registry.get_model(name)
        if model is None:
            raise ModelNotFound(f"model '{name}' is not served here; see GET /v2/models")
        return model

    def decode(self, body: Any, headers: dict[str, Any], protocol_version: str = PredictorProtocol.REST_V1.value,
               model_name: str | None = None) -> tuple[Any, dict[str, Any]]:
        """v1: a multipart/form-data or raw image body becomes a `forms.Upload` (the model's codec step types
        it); any other body is parsed as JSON whatever its Content-Type claims.

        KServe hands a body whose Content-Type is not JSON to the model undecoded, so `curl -d '{...}'`
        (form-urlencoded) failed although KServe's own examples send exactly that; v2 parses such bodies
        already. A body that is not JSON either is refused by its Content-Type (`forms.not_json`). CloudEvents
        in binary mode keep KServe's header-driven decoding.
        """
        if (isinstance(body, bytes) and protocol_version.lower() == PredictorProtocol.REST_V1.value
                and not has_binary_headers(headers)):
            content_type = headers.get("content-type")
            upload = forms.upload_of(body, content_type, request_query.get())
            if upload is not None:
                return upload, {}
            try:
                body = orjson.loads(body)
            except orjson.JSONDecodeError as error:
                raise forms.not_json(content_type, error) from None
        return super().decode(body, headers, protocol_version, model_name)

    async def ready(self) -> bool:
        models = self.model_registry.get_models().values()
        return bool(models) and all(model.ready for model in models)

    def decode_inference_request(self, body: bytes | InferenceRequest, headers: dict[str, Any],
                                 model_name: str) -> InferRequest:
        if isinstance(body, bytes):
            length = headers.get(INFERENCE_HEADER_LENGTH)
            if length is None:
                # A plain JSON body that FastAPI handed over unparsed.
                return parse_binary_request(body, len(body), model_name)
            try:
                json_length = int(length)
            except ValueError:
                raise InvalidInput(f"Inference-Header-Content-Length must be an integer, got {length!r}") from None
            return parse_binary_request(body, json_length, model_name)
        return super().decode_inference_request(body, headers, model_name)
