"""This server's OpenAPI document (``GET /openapi.json``): every REST route, as it behaves.

Made from what the server serves: each served model gets its own inference, job and metadata paths with its exact
inputs, outputs and typed parameters (from its `Predictor`: `InputSpec`, `OutputSpec`, `Parameters`); the
templated paths (`/v2/models/{model_name}/...`) describe what any other name gets (404 MODEL_NOT_FOUND). Error
answers are `{"error", "code", "request_id"}` with the codes of `predictors.errors`. The integration tier runs
schemathesis over this document against the real server, so a route that answers something the document does not
say fails a test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from predictors import errors
from predictors.codecs.forms import RAW_IMAGE_TYPES
from predictors.codecs.images import OUTPUT_FORMATS
from predictors.codecs.types import TIMEOUT_HEADER, InputSpec, OutputSpec
from predictors.dataplane.dataplane import EXTENSIONS, INFERENCE_HEADER_LENGTH, SERVER_NAME, server_version
from predictors.settings import Settings
from predictors.status import STATUS_PATH

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/"
JSON = "application/json"
_JSON_TYPES = {"BYTES": "string", "FP32": "number", "INT32": "integer", "INT64": "integer", "BOOL": "boolean"}


@dataclass(frozen=True)
class ServedModel:
    """What the document needs of a served model."""

    name: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    parameters: type[BaseModel]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _codes() -> dict[str, tuple[int, str]]:
    """Every documented error code: code -> (HTTP status, when)."""
    found: dict[str, tuple[int, str]] = {}
    pending: list[type[errors.PredictorError]] = [errors.PredictorError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__doc__ and cls is not errors.RetryLater:
            found.setdefault(cls.code, (int(cls.status), " ".join(cls.__doc__.split())))
    return found


def _error_response(codes: Iterable[str], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    known = _codes()
    listed = sorted(set(codes))
    described = "; ".join(f"`{code}`: {known[code][1]}" for code in listed)
    schema = {"allOf": [_ref("Error"), {"properties": {"code": {"enum": listed}}}]}
    return {"description": described, "headers": {**_request_id_header(), **(headers or {})},
            "content": {JSON: {"schema": schema}}}


def _request_id_header() -> dict[str, Any]:
    return {"X-Request-ID": {"description": "The request's id (the caller's, when well-formed, else a new one).",
                             "required": True, "schema": {"type": "string"}}}


def _errors(*codes: str) -> dict[str, Any]:
    """Responses for `codes`, grouped by HTTP status."""
    known = _codes()
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(known[code][0], []).append(code)
    responses = {}
    for status, grouped in sorted(by_status.items()):
        retry = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}}
        responses[str(status)] = _error_response(grouped, retry if status == 503 else None)
    return responses


def _ok(schema: dict[str, Any], description: str = "OK", media: str = JSON,
        extra_media: dict[str, Any] | None = None, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "headers": {**_request_id_header(), **(headers or {})},
            "content": {media: {"schema": schema}, **(extra_media or {})}}


#: the errors of every inference request, whatever its protocol
_INFER_ERRORS = ("INVALID_INPUT", "INVALID_IMAGE", "MODEL_NOT_FOUND", "PAYLOAD_TOO_LARGE", "IMAGE_TOO_LARGE",
                 "MODEL_NOT_READY", "SERVICE_BUSY", "TIMEOUT", "INTERNAL_ERROR", "IMAGE_URL_REFUSED",
                 "IMAGE_URL_TOO_LARGE", "IMAGE_URL_FAILED")
_V1_ERRORS = (*_INFER_ERRORS, "UNSUPPORTED_MEDIA_TYPE", "NOT_ACCEPTABLE")
_JOB_ERRORS = ("JOBS_DISABLED", "JOBS_UNAVAILABLE")


def _any_model() -> dict[str, Any]:
    return {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "A model name: a served model answers as its own path in this document says; any "
                           "other name is 404 MODEL_NOT_FOUND."}


_VERSION_PARAM = {"name": "model_version", "in": "path", "required": True,
                  "description": "Any version: models here are unversioned, so every version is 404.",
                  "schema": {"type": "string"}}


def _timeout_header() -> dict[str, Any]:
    return {"name": TIMEOUT_HEADER.title(), "in": "header", "required": False,
            "description": "The request's deadline in milliseconds (504 TIMEOUT after it); the `timeout_ms` "
                           "parameter wins over it.",
            "schema": {"type": "number", "exclusiveMinimum": 0}}


def _parameters_schema(model: ServedModel, protocol_parameters: dict[str, Any]) -> dict[str, Any]:
    schema = model.parameters.model_json_schema()
    properties = {name: {key: value for key, value in field.items() if key != "title"}
                  for name, field in schema.get("properties", {}).items()}
    properties["timeout_ms"] = {"type": "number", "exclusiveMinimum": 0,
                                "description": "The request's deadline in milliseconds (504 TIMEOUT after it)."}
    properties.update(protocol_parameters)
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _text_schema(spec: InputSpec) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "description": f"At most {spec.max_bytes} bytes of UTF-8."}


def _v1_image_schema(image_urls: bool) -> dict[str, Any]:
    choices: list[dict[str, Any]] = [
        {"type": "object", "properties": {"b64": {"type": "string"}}, "required": ["b64"],
         "additionalProperties": False, "description": "The encoded image (JPEG, PNG, WebP, BMP), base64."},
        {"type": "string", "description": "The encoded image, base64."},
    ]
    if image_urls:
        choices.append({"type": "object", "properties": {"url": {"type": "string", "format": "uri"}},
                        "required": ["url"], "additionalProperties": False,
                        "description": "An image the server fetches (docs/protocol.md, \"Images by URL\")."})
    return {"oneOf": choices}


def _v1_request(model: ServedModel, settings: Settings, image_urls: bool) -> dict[str, Any]:
    properties = {spec.name: _v1_image_schema(image_urls) if spec.kind == "image" else _text_schema(spec)
                  for spec in model.inputs}
    instance = {"type": "object", "properties": properties, "additionalProperties": False,
                "required": [spec.name for spec in model.inputs if not spec.optional]}
    return {"type": "object", "additionalProperties": False, "required": ["instances"], "properties": {
        "instances": {"type": "array", "items": instance, "minItems": 1, "maxItems": settings.max_items_per_request},
        "parameters": _parameters_schema(model, {}),
    }}


def _form_schema(model: ServedModel, image_urls: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for spec in model.inputs:
        one = {"type": "string", "format": "binary"} if spec.kind == "image" else _text_schema(spec)
        properties[spec.name] = {"oneOf": [one, {"type": "array", "items": one, "minItems": 1}],
                                 "description": "Given once: for every instance; given N times: one per instance."}
    if image_urls:
        properties["image_url"] = {"type": "string", "format": "uri",
                                   "description": "An image the server fetches, instead of an `image` part."}
    properties.update(_parameters_schema(model, {})["properties"])
    required = [spec.name for spec in model.inputs if not spec.optional and not (image_urls and spec.kind == "image")]
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _query_parameters(model: ServedModel) -> list[dict[str, Any]]:
    """An upload's parameters and text inputs may travel in the query string (a raw image body's only place for
    them); with a JSON body any query string is 400 INVALID_INPUT."""
    note = "Only with an upload (multipart/form-data or an image body); with a JSON body, 400 INVALID_INPUT."
    parameters = [{"name": name, "in": "query", "required": False, "schema": schema, "description": note}
                  for name, schema in _parameters_schema(model, {})["properties"].items()]
    parameters += [{"name": spec.name, "in": "query", "required": False, "schema": _text_schema(spec),
                    "description": note} for spec in model.inputs if spec.kind == "text"]
    return parameters


def _v1_body(model: ServedModel, settings: Settings, image_urls: bool, raw_images: bool) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": _v1_request(model, settings, image_urls)},
                               "multipart/form-data": {"schema": _form_schema(model, image_urls)}}
    if raw_images:
        for media in sorted(RAW_IMAGE_TYPES):
            content[media] = {"schema": {"type": "string", "format": "binary"}}
    return {"required": True, "content": content}


def _v1_prediction(model: ServedModel) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for spec in model.outputs:
        element: dict[str, Any] = {"type": _JSON_TYPES[spec.datatype]}
        if spec.image_format_parameter:
            element = {"type": "object", "properties": {"b64": {"type": "string"}}, "required": ["b64"]}
        if spec.element_names:
            properties[spec.name] = {"type": "object", "properties": {name: element for name in spec.element_names},
                                     "required": list(spec.element_names)}
        elif spec.shape:
            properties[spec.name] = {"type": "array", "items": element}
        else:
            properties[spec.name] = element
    return {"type": "object", "properties": properties, "required": [spec.name for spec in model.outputs]}


def _image_answer(model: ServedModel) -> dict[str, Any]:
    """The image media types of an answer that is the model's image itself (``Accept: image/...``)."""
    if not any(spec.image_format_parameter for spec in model.outputs):
        return {}
    return {f"image/{fmt}": {"schema": {"type": "string", "format": "binary"}} for fmt in OUTPUT_FORMATS}


def _v2_request(model: ServedModel, settings: Settings, image_urls: bool) -> dict[str, Any]:
    names = [spec.name for spec in model.inputs]
    if image_urls:
        names += [f"{spec.name}_url" for spec in model.inputs if spec.kind == "image"]
    tensor = {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
        "name": {"enum": names, "description": "An input of the model; `<image input>_url` (when images by URL "
                                               "are on) gives that image input as URLs."},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 1,
                                             "maximum": settings.max_items_per_request},
                  "minItems": 1, "maxItems": 1},
        "datatype": {"const": "BYTES"},
        "parameters": {"type": "object"},
        "data": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                 "description": "Images as base64 strings, texts as strings; one element per item."},
    }}
    binary_flag = {"type": "boolean", "description": "Binary tensor data extension: answer every output as binary "
                   "data unless an output's own `binary_data` says otherwise."}
    output = {"type": "object", "required": ["name"], "properties": {
        "name": {"enum": [spec.name for spec in model.outputs]},
        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
    }}
    return {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string", "description": "Returned unchanged as the answer's `id`."},
        "parameters": _parameters_schema(model, {"binary_data_output": binary_flag}),
        "inputs": {"type": "array", "items": tensor, "minItems": 1},
        "outputs": {"type": "array", "items": output},
    }}


def _v2_response(model: ServedModel) -> dict[str, Any]:
    tensor = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
        "name": {"enum": [spec.name for spec in model.outputs]},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"enum": sorted({spec.datatype for spec in model.outputs})},
        "parameters": {"type": "object", "properties": {
            "binary_data_size": {"type": "integer", "minimum": 0},
            "element_names": {"type": "string"}}},
        "data": {"type": "array"},
    }}
    return {"type": "object", "required": ["model_name", "outputs"], "additionalProperties": False, "properties": {
        "model_name": {"const": model.name},
        "id": {"type": "string", "description": "The request's `id`; absent when it had none."},
        "outputs": {"type": "array", "items": tensor},
    }}


def _operation(summary: str, responses: dict[str, Any], *, parameters: Sequence[dict[str, Any]] = (),
               body: dict[str, Any] | None = None, description: str = "", tags: Sequence[str] = ()) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if description:
        operation["description"] = description
    if tags:
        operation["tags"] = list(tags)
    if parameters:
        operation["parameters"] = list(parameters)
    if body:
        operation["requestBody"] = body
    return operation


def _model_paths(model: ServedModel, settings: Settings, image_urls: bool) -> dict[str, Any]:
    name = model.name
    v2_body = {"required": True, "content": {
        JSON: {"schema": _v2_request(model, settings, image_urls)},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                     "description": "Binary tensor data extension: a JSON header of "
                                                    f"`{INFERENCE_HEADER_LENGTH}` bytes, then the tensors."},
    }}
    length_header = {"name": INFERENCE_HEADER_LENGTH.title(), "in": "header", "required": False,
                     "description": "Binary tensor data extension: the length of the JSON header that starts "
                                    "the body (absent: the whole body is JSON).",
                     "schema": {"type": "integer", "minimum": 0}}
    v2_ok = _ok(_v2_response(model), "The outputs (JSON, or a JSON header followed by binary tensors).",
                extra_media={"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                headers={INFERENCE_HEADER_LENGTH.title(): {
                    "description": "Present when binary tensors follow the JSON header: its length.",
                    "schema": {"type": "string"}}})
    image_headers = {"X-Quality-Score": {"schema": {"type": "string"}}} if _image_answer(model) else {}
    v1_ok = _ok({"type": "object", "required": ["predictions"], "additionalProperties": False,
                 "properties": {"predictions": {"type": "array", "items": _v1_prediction(model)}}},
                "One prediction per instance; with `Accept: image/...` the image itself (face-enhancement).",
                extra_media=_image_answer(model), headers=image_headers)
    accept = {"name": "Accept", "in": "header", "required": False, "schema": {"type": "string"},
              "description": "`image/jpeg`, `image/png` or `image/*` (preferred to JSON) answers with the image "
                             "itself where the model returns one; else 406 NOT_ACCEPTABLE."}
    job = _ok(_ref("JobAccepted"), "Accepted: the job is queued.", headers={
        "Location": {"required": True, "schema": {"type": "string"}, "description": "/v2/jobs/<id>"}})
    idempotency = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"}}
    face = ("FACE_NOT_FOUND",) if any(spec.image_format_parameter for spec in model.outputs) else ()
    v1_parameters = [_timeout_header(), accept, *_query_parameters(model)]
    return {
        f"/v2/models/{name}": {"get": _operation(
            "Model metadata", {"200": _ok(_ref("ModelMetadata")), **_errors("MODEL_NOT_FOUND")}, tags=[name])},
        f"/v2/models/{name}/ready": {"get": _operation(
            "Model ready", {"200": _ok(_ref("ModelReady")), **_errors("MODEL_NOT_READY", "MODEL_NOT_FOUND")},
            tags=[name])},
        f"/v1/models/{name}": {"get": _operation(
            "Model ready (v1)", {"200": _ok(_ref("ModelReady")), **_errors("MODEL_NOT_READY", "MODEL_NOT_FOUND")},
            tags=[name])},
        f"/v2/models/{name}/infer": {"post": _operation(
            "Inference (Open Inference Protocol)", {"200": v2_ok, **_errors(*_INFER_ERRORS, *face)},
            parameters=[_timeout_header(), length_header], body=v2_body, tags=[name])},
        f"/v1/models/{name}:predict": {"post": _operation(
            "Predict (KServe v1): JSON, multipart/form-data upload or a raw image body",
            {"200": v1_ok, **_errors(*_V1_ERRORS, *face)}, parameters=v1_parameters,
            body=_v1_body(model, settings, image_urls, raw_images=True), tags=[name])},
        f"/v2/models/{name}/jobs": {"post": _operation(
            "Submit an asynchronous job (a v2 body)", {"202": job, **_errors(*_INFER_ERRORS, *_JOB_ERRORS)},
            parameters=[length_header, idempotency], body=v2_body, tags=[name, "jobs"])},
        f"/v1/models/{name}:submit": {"post": _operation(
            "Submit an asynchronous job (a v1 body)",
            {"202": job, **_errors(*_V1_ERRORS, *_JOB_ERRORS)},
            parameters=[idempotency, *_query_parameters(model)],
            body=_v1_body(model, settings, image_urls, raw_images=True), tags=[name, "jobs"])},
    }


def _generic_paths() -> dict[str, Any]:
    """The templated model paths: a served model answers as its own paths say (their union here), any other name
    is 404 MODEL_NOT_FOUND (NOT_FOUND for a name that makes no route, such as an empty one)."""
    model = _any_model()
    any_json = {"type": "object"}
    any_body: dict[str, Any] = {"content": {"*/*": {"schema": {}}}}
    any_image = {f"image/{fmt}": {"schema": {"type": "string", "format": "binary"}} for fmt in OUTPUT_FORMATS}
    binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    face = ("FACE_NOT_FOUND",)
    return {
        "/v2/models/{model_name}": {"get": _operation(
            "Model metadata (any model name)", {"200": _ok(_ref("ModelMetadata")),
                                                **_errors("MODEL_NOT_FOUND", "NOT_FOUND")}, parameters=[model])},
        "/v2/models/{model_name}/ready": {"get": _operation(
            "Model ready (any model name)", {"200": _ok(_ref("ModelReady")),
                                             **_errors("MODEL_NOT_FOUND", "MODEL_NOT_READY", "NOT_FOUND")},
            parameters=[model])},
        "/v1/models/{model_name}": {"get": _operation(
            "Model ready, v1 (any model name)", {"200": _ok(_ref("ModelReady")),
                                                 **_errors("MODEL_NOT_FOUND", "MODEL_NOT_READY", "NOT_FOUND")},
            parameters=[model])},
        "/v2/models/{model_name}/infer": {"post": _operation(
            "Inference (any model name)", {"200": _ok(any_json, extra_media=binary),
                                           **_errors(*_INFER_ERRORS, *face, "NOT_FOUND")},
            parameters=[model], body=any_body)},
        "/v1/models/{model_name}:predict": {"post": _operation(
            "Predict (any model name)", {"200": _ok(any_json, extra_media=any_image),
                                         **_errors(*_V1_ERRORS, *face, "NOT_FOUND")},
            parameters=[model], body=any_body)},
        "/v2/models/{model_name}/jobs": {"post": _operation(
            "Submit a job, v2 body (any model name)", {"202": _ok(_ref("JobAccepted")),
                                                       **_errors(*_INFER_ERRORS, *_JOB_ERRORS, "NOT_FOUND")},
            parameters=[model], body=any_body, tags=["jobs"])},
        "/v1/models/{model_name}:submit": {"post": _operation(
            "Submit a job, v1 body (any model name)", {"202": _ok(_ref("JobAccepted")),
                                                       **_errors(*_V1_ERRORS, *_JOB_ERRORS, "NOT_FOUND")},
            parameters=[model], body=any_body, tags=["jobs"])},
        "/v2/models/{model_name}/versions/{model_version}": {"get": _operation(
            "Model metadata of a version: none is served", _errors("MODEL_NOT_FOUND", "NOT_FOUND"),
            parameters=[model, _VERSION_PARAM])},
        "/v2/models/{model_name}/versions/{model_version}/ready": {"get": _operation(
            "Model ready of a version: none is served", _errors("MODEL_NOT_FOUND", "NOT_FOUND"),
            parameters=[model, _VERSION_PARAM])},
        "/v2/models/{model_name}/versions/{model_version}/infer": {"post": _operation(
            "Inference of a version: none is served", _errors("MODEL_NOT_FOUND", "NOT_FOUND", "PAYLOAD_TOO_LARGE"),
            parameters=[model, _VERSION_PARAM], body=any_body)},
    }


def _server_paths(jobs: bool) -> dict[str, Any]:
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    wait = {"name": "wait", "in": "query", "required": False,
            "description": "Long poll: answer once the job has ended, or after this many seconds (at most 30).",
            "schema": {"type": "number", "minimum": 0}}
    job_errors = _errors("JOB_NOT_FOUND", "JOBS_DISABLED", "JOBS_UNAVAILABLE", "INVALID_INPUT")
    return {
        "/v2/health/live": {"get": _operation("Server live", {"200": _ok(_ref("Live"))}, tags=["health"])},
        "/v2/health/ready": {"get": _operation(
            "Server ready: every model is ready", {"200": _ok(_ref("Ready")), **_errors("MODEL_NOT_READY")},
            tags=["health"])},
        "/v2": {"get": _operation("Server metadata", {"200": _ok(_ref("ServerMetadata"))})},
        "/v2/": {"get": _operation("Server metadata (the path of the OIP's OpenAPI document)",
                                   {"200": _ok(_ref("ServerMetadata"))})},
        "/v2/models": {"get": _operation("Served models", {"200": _ok(_ref("ModelList"))})},
        "/v1/models": {"get": _operation("Served models (v1)", {"200": _ok(_ref("ModelList"))})},
        "/v2/jobs/{job_id}": {
            "get": _operation("An asynchronous job", {"200": _ok(_ref("Job")), **job_errors},
                              parameters=[job_id, wait], tags=["jobs"],
                              description="" if jobs else "Jobs are off on this server: 404 JOBS_DISABLED."),
            "delete": _operation("Cancel an asynchronous job", {"200": _ok(_ref("Job")), **job_errors},
                                 parameters=[job_id], tags=["jobs"]),
        },
        STATUS_PATH: {"get": _operation("Server status (`predictors status`)", {"200": _ok(_ref("Status"))})},
        "/metrics": {"get": _operation("Prometheus metrics", {"200": _ok(
            {"type": "string"}, media="text/plain; version=0.0.4; charset=utf-8",
            extra_media={"application/openmetrics-text; version=1.0.0; charset=utf-8": {
                "schema": {"type": "string"}}})})},
        "/openapi.json": {"get": _operation("This document", {"200": _ok({"type": "object"})})},
    }


def _components() -> dict[str, Any]:
    tensor = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"type": "string"}, "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}}}}
    return {"schemas": {
        "Error": {"type": "object", "required": ["error", "code", "request_id"], "additionalProperties": False,
                  "properties": {"error": {"type": "string"}, "code": {"enum": sorted(_codes())},
                                 "request_id": {"type": "string"}}},
        "Live": {"type": "object", "required": ["live"], "properties": {"live": {"const": True}}},
        "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"const": True}}},
        "ModelReady": {"type": "object", "required": ["name", "ready"],
                       "properties": {"name": {"type": "string"}, "ready": {"const": True}}},
        "ModelList": {"type": "object", "required": ["models"],
                      "properties": {"models": {"type": "array", "items": {"type": "string"}}}},
        "ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"],
                           "additionalProperties": False, "properties": {
                               "name": {"const": SERVER_NAME}, "version": {"type": "string"},
                               "extensions": {"type": "array", "items": {"enum": list(EXTENSIONS)}}}},
        "ModelMetadata": {"type": "object", "required": ["name", "platform", "inputs", "outputs"],
                          "additionalProperties": False, "properties": {
                              "name": {"type": "string"}, "platform": {"type": "string"},
                              "inputs": {"type": "array", "items": tensor},
                              "outputs": {"type": "array", "items": tensor}}},
        "JobAccepted": {"type": "object", "required": ["id", "model", "status", "created_at"], "properties": {
            "id": {"type": "string"}, "model": {"type": "string"}, "status": {"type": "string"},
            "created_at": {"type": "string"}}},
        "Job": {"type": "object", "required": ["id", "model", "status", "created_at"], "properties": {
            "id": {"type": "string"}, "model": {"type": "string"},
            "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "created_at": {"type": "string"}, "started_at": {"type": "string"},
            "finished_at": {"type": "string"}, "attempts": {"type": "integer"},
            "result": {"type": "object"},
            "error": {"type": "object", "required": ["error", "code"]}}},
        "Status": {"type": "object", "required": ["ready", "models"], "properties": {
            "ready": {"type": "boolean"}, "models": {"type": "array", "items": {"type": "object"}}}},
    }}


def openapi_document(settings: Settings, models: Sequence[ServedModel]) -> dict[str, Any]:
    image_urls = bool(settings.image_url_allow)
    paths: dict[str, Any] = {}
    paths.update(_server_paths(jobs=settings.jobs_redis_url is not None))
    for model in models:
        paths.update(_model_paths(model, settings, image_urls))
    paths.update(_generic_paths())
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": SERVER_NAME, "version": server_version(),
                 "description": "KServe v1 and Open Inference Protocol (v2) REST API of vision-predictors, with "
                                "uploads, image answers and asynchronous jobs (docs/protocol.md)."},
        "paths": paths,
        "components": _components(),
    }
