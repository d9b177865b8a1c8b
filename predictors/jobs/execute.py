"""`JobExecutor`: a stored request through the synchronous route's own path, so that a job's result is the
answer the synchronous route gives for the same body.

The REST inference routes (``server/rest.py``) do three things per request: the data plane decodes the body (v1
JSON or upload, v2 JSON or binary extension; ``dataplane/dataplane.py``), runs the model (``kserve.Model.__call__``:
our `KServeModel`'s preprocess -> predict -> postprocess hooks, i.e. codec -> `ModelRuntime.infer` -> codec) and
the route writes the answer. A job does the same calls with the same headers. Its answer is stored as JSON:
a v2 request that asked for binary outputs gets them as JSON (base64 for binary content) instead.
"""

from __future__ import annotations

from typing import Any

import orjson
from kserve.constants.constants import PredictorProtocol
from kserve.protocol.infer_type import InferRequest

from predictors.codecs.types import model_parameters, request_deadline
from predictors.codecs.v2 import V2Response
from predictors.dataplane.context import request_query
from predictors.dataplane.dataplane import INFERENCE_HEADER_LENGTH, PredictorDataPlane
from predictors.dataplane.kserve_model import KServeModel
from predictors.jobs.store import StoredRequest
from predictors.telemetry.context import REQUEST_ID_HEADER

#: what the v1 route's ORJSONResponse renders with
_V1_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class JobExecutor:
    def __init__(self, dataplane: PredictorDataPlane) -> None:
        self.dataplane = dataplane

    async def check(self, model: KServeModel, request: StoredRequest) -> None:
        """At submission: everything the synchronous route checks before the model runs (the body, the
        codec, the parameters, every image checked with the model's limits: `check_image`); raises its 4xx
        error."""
        decoded, headers = self._decode(model.name, request)
        wire = await model.preprocess(decoded, headers)
        request_deadline(wire.parameters, {})
        await model.runtime.validate(wire.items, model_parameters(wire.parameters))

    async def run(self, model_name: str, request: StoredRequest) -> bytes:
        """The synchronous route's answer to `request`, as JSON."""
        decoded, headers = self._decode(model_name, request)
        if isinstance(decoded, InferRequest):
            _answer_in_json(decoded)
        response, _ = await self.dataplane.infer(model_name, decoded, headers)
        if isinstance(response, V2Response):  # what the v2 route returns (JSON: binary outputs were dropped)
            return response.rest_body()[0]
        return orjson.dumps(response, option=_V1_JSON_OPTIONS)

    def _decode(self, model_name: str, request: StoredRequest) -> tuple[Any, dict[str, str]]:
        headers = request_headers(request)
        request_query.set(request.query)  # where a v1 upload's parameters may be (the data plane reads it)
        if request.protocol == "v1":
            decoded, _ = self.dataplane.decode(request.body, headers)
        else:
            decoded, _ = self.dataplane.decode(request.body, headers, PredictorProtocol.REST_V2.value, model_name)
        return decoded, headers


def request_headers(request: StoredRequest) -> dict[str, str]:
    """The headers of the submission that shape decoding, as the synchronous route would see them."""
    headers = {REQUEST_ID_HEADER: request.request_id}
    if request.content_type:
        headers["content-type"] = request.content_type
    if request.header_length:
        headers[INFERENCE_HEADER_LENGTH] = request.header_length
    return headers


def _answer_in_json(request: InferRequest) -> None:
    """Drop the request's asks for binary outputs: a job's result is stored and served as JSON."""
    if request.parameters:
        request.parameters.pop("binary_data_output", None)
    for output in request.request_outputs or []:
        if output.parameters:
            output.parameters.pop("binary_data", None)
