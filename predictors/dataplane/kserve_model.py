"""`KServeModel`: the `kserve.Model` that serves one model, a thin adapter onto its `ModelRuntime`.

KServe calls the three hooks in turn; each is one step:

- ``preprocess``: the codec decodes the wire payload (v1 JSON or upload, v2 JSON/binary, gRPC) into a
  `WireRequest`, a v1 ``Accept`` that asks for the image itself is settled (`codecs.accept`), and images given
  by URL are fetched (`image_urls`);
- ``predict``: the request's deadline and parameters, then ``runtime.infer`` -> an `AnsweredRequest`
  (the codec layer's object that carries the decoded request to the encoder);
- ``postprocess``: the codec encodes the results for the request's protocol (or the image answer's bytes and
  headers).

Readiness, the model's device and queue are the runtime's; the adapter only presents them to KServe.
"""

from __future__ import annotations

from typing import Any

import kserve
from kserve.protocol.infer_type import InferRequest

from predictors.codecs import accept, forms, v1, v2
from predictors.codecs.types import AnsweredRequest, WireRequest, model_parameters, request_deadline
from predictors.dataplane.image_urls import ImageFetcher
from predictors.runtime import ModelRuntime


class KServeModel(kserve.Model):
    runtime: ModelRuntime[Any, Any]

    def __init__(self, runtime: ModelRuntime[Any, Any], image_urls: ImageFetcher | None = None) -> None:
        # response headers: an image answer sets its Content-Type and X- headers
        super().__init__(runtime.name, return_response_headers=True)
        self.runtime = runtime
        #: fetches the images a request gives by URL (the default refuses them: images by URL are off)
        self.image_urls = image_urls or ImageFetcher()

    # KServe reads and sets `ready` (its data plane, `stop`); the runtime owns it. The base class's
    # constructor sets it to False before the runtime is attached: that default is the runtime's own.
    @property  # type: ignore[override]
    def ready(self) -> bool:
        return self.runtime.ready

    @ready.setter
    def ready(self, value: bool) -> None:
        if "runtime" in self.__dict__:
            self.runtime.ready = value

    def load(self) -> bool:
        return self.runtime.load()

    def stop(self) -> None:
        self.runtime.stop()

    def get_input_types(self) -> list[dict[str, Any]]:
        return [spec.metadata() for spec in self.runtime.predictor.inputs]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [spec.metadata() for spec in self.runtime.predictor.outputs]

    def validate(self, payload: Any) -> Any:
        return payload

    async def preprocess(self, payload: dict[str, Any] | InferRequest,
                         headers: dict[str, str] | None = None) -> WireRequest:
        predictor, limit = self.runtime.predictor, self.runtime.config.max_items_per_request
        if isinstance(payload, InferRequest):
            wire = v2.decode_request(payload, predictor.inputs, predictor.outputs, limit)
        else:
            if isinstance(payload, forms.Upload):
                wire = forms.decode_upload(payload, predictor.inputs, predictor.Parameters, limit)
            else:
                wire = v1.decode_request(payload, predictor.inputs, limit)
            accept.negotiate(wire, (headers or {}).get("accept"), predictor.outputs)
        await self.image_urls.resolve(wire)
        return wire

    async def predict(self, payload: WireRequest, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> AnsweredRequest:
        deadline = request_deadline(payload.parameters, headers or {})
        results = await self.runtime.infer(payload.items, model_parameters(payload.parameters), deadline)
        return AnsweredRequest(payload, results)

    async def postprocess(self, result: AnsweredRequest, headers: dict[str, str] | None = None,
                          response_headers: dict[str, str] | None = None) -> dict[str, Any] | v2.V2Response | bytes:
        outputs = self.runtime.predictor.outputs
        if result.wire.image_answer:
            body, image_headers = accept.encode_image_answer(result.results[0], outputs)
            if response_headers is not None:
                response_headers.update(image_headers)
            return body
        if result.wire.protocol == "v1":
            return v1.encode_response(result.results, outputs)
        return v2.encode_response(result.wire, result.results, outputs, self.name)
