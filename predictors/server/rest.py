"""The REST transport: every route the server answers, each a thin adapter onto the data plane.

The application is ours (not KServe's module-level one): it answers exactly `ROUTES`, the routes docs/protocol.md
lists and `/openapi.json` describes; anything else is 404 ``NOT_FOUND`` (405
``METHOD_NOT_ALLOWED`` for a known path with another method). No trailing-slash redirects, no KServe model
repository, ``:explain``, Swagger or OpenAPI routes of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, exposition
from starlette.convertors import Convertor, register_url_convertor

from predictors.codecs.v2 import V2Response
from predictors.dataplane.dataplane import INFERENCE_HEADER_LENGTH, PredictorDataPlane
from predictors.errors import ModelNotReady
from predictors.jobs.routes import install_job_routes
from predictors.jobs.service import JobService
from predictors.kserve_compat import fastapi_telemetry_config
from predictors.server.errors import install_rest_handlers
from predictors.server.middleware import RequestContextMiddleware
from predictors.status import STATUS_PATH
from predictors.telemetry.edge import EdgeTelemetry
from predictors.telemetry.tracing import limit_fastapi_telemetry

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
OPENAPI_PATH = "/openapi.json"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str


def _json(document: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS),
                    status_code=status_code, media_type=JSON, headers=headers)


def _lower_headers(request: Request) -> dict[str, str]:
    return {key.lower(): value for key, value in request.headers.items()}


def v2_answer(response: V2Response) -> Response:
    """A v2 inference answer: JSON, or a JSON header followed by binary tensors (binary tensor data extension)."""
    body, json_length = response.rest_body()
    if json_length is None:
        return Response(body, media_type=JSON)
    return Response(body, media_type=OCTET_STREAM, headers={INFERENCE_HEADER_LENGTH: str(json_length)})


class _V1ModelName(Convertor[str]):
    """A model name in a v1 path, which ends at a ':' (`/v1/models/<name>:predict`): so that
    ``POST /v1/models/<name>:explain`` is no route (404), not the readiness route with another method (405)."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class RestRoutes:
    """The handlers; each decodes what its route takes, calls the data plane, and encodes the answer."""

    def __init__(self, dataplane: PredictorDataPlane, status: Callable[[], dict[str, Any]],
                 openapi: Callable[[], dict[str, Any]], registry: CollectorRegistry = REGISTRY) -> None:
        self.dataplane = dataplane
        self.status = status
        self.openapi = openapi
        self.registry = registry

    # ---- health, metadata, operations ----

    async def live(self) -> Response:
        return _json({"live": True})

    async def ready(self) -> Response:
        if not await self.dataplane.ready():
            raise ModelNotReady("not every model is ready yet (GET /v2/predictors/status says which)")
        return _json({"ready": True})

    async def server_metadata(self) -> Response:
        return _json(self.dataplane.metadata())

    async def v2_models(self) -> Response:
        return _json({"models": self.dataplane.model_names()})

    async def model_metadata(self, model_name: str, model_version: str | None = None) -> Response:
        return _json(await self.dataplane.model_metadata(model_name, model_version))

    async def model_ready(self, model_name: str, model_version: str | None = None) -> Response:
        self.dataplane.model_of(model_name, model_version)
        await self.dataplane.get_model(model_name)  # 503 MODEL_NOT_READY while it loads
        return _json({"name": model_name, "ready": True})

    async def server_status(self) -> Response:
        return _json(self.status())

    async def metrics(self, request: Request) -> Response:
        encoder, content_type = exposition.choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(self.registry), headers={"content-type": content_type})

    async def openapi_document(self) -> Response:
        return _json(self.openapi())

    # ---- inference ----

    async def infer(self, model_name: str, request: Request, model_version: str | None = None) -> Response:
        self.dataplane.model_of(model_name, model_version)
        await self.dataplane.get_model(model_name)  # 503 MODEL_NOT_READY before the body is looked at
        headers = _lower_headers(request)
        decoded, _ = self.dataplane.decode(await request.body(), headers, "v2", model_name)
        response, _ = await self.dataplane.infer(model_name, decoded, headers)
        assert isinstance(response, V2Response)
        return v2_answer(response)

    async def infer_versioned(self, model_name: str, model_version: str, request: Request) -> Response:
        return await self.infer(model_name, request, model_version)

    async def v1_models(self) -> Response:
        return _json({"models": self.dataplane.model_names()})

    async def v1_model_ready(self, model_name: str) -> Response:
        return await self.model_ready(model_name)

    async def predict(self, model_name: str, request: Request) -> Response:
        await self.dataplane.get_model(model_name)
        headers = _lower_headers(request)
        decoded, _ = self.dataplane.decode(await request.body(), headers)
        response, response_headers = await self.dataplane.infer(model_name, decoded, headers)
        if isinstance(response, bytes):  # an image answer (`codecs.accept`): its Content-Type is in the headers
            return Response(response, headers=response_headers)
        return _json(response)


def install_routes(app: FastAPI, routes: RestRoutes, jobs: JobService | None) -> None:
    get = ["GET"]
    add = app.add_api_route
    add("/v2/health/live", routes.live, methods=get, summary="Server live")
    add("/v2/health/ready", routes.ready, methods=get, summary="Server ready")
    add("/v2", routes.server_metadata, methods=get, summary="Server metadata")
    add("/v2/", routes.server_metadata, methods=get, summary="Server metadata (the OIP OpenAPI document's path)")
    add("/v2/models", routes.v2_models, methods=get, summary="Served models")
    add("/v2/models/{model_name}", routes.model_metadata, methods=get, summary="Model metadata")
    add("/v2/models/{model_name}/versions/{model_version}", routes.model_metadata, methods=get,
        summary="Model metadata of a version (none is served: 404)")
    add("/v2/models/{model_name}/ready", routes.model_ready, methods=get, summary="Model ready")
    add("/v2/models/{model_name}/versions/{model_version}/ready", routes.model_ready, methods=get,
        summary="Model ready of a version (none is served: 404)")
    add("/v2/models/{model_name}/infer", routes.infer, methods=["POST"], summary="Inference (v2)")
    add("/v2/models/{model_name}/versions/{model_version}/infer", routes.infer_versioned, methods=["POST"],
        summary="Inference of a version (none is served: 404)")
    add("/v1/models", routes.v1_models, methods=get, summary="Served models (v1)")
    add("/v1/models/{model_name:v1_model}", routes.v1_model_ready, methods=get, summary="Model ready (v1)")
    add("/v1/models/{model_name:v1_model}:predict", routes.predict, methods=["POST"], summary="Predict (v1)")
    install_job_routes(app, jobs)
    add(STATUS_PATH, routes.server_status, methods=get, summary="Server status (predictors status)")
    add("/metrics", routes.metrics, methods=get, summary="Prometheus metrics")
    add(OPENAPI_PATH, routes.openapi_document, methods=get, summary="This server's OpenAPI document")


def build_app(routes: RestRoutes, *, jobs: JobService | None, max_body_bytes: int,
              telemetry: EdgeTelemetry) -> FastAPI:
    """The REST application: our routes, our error handlers, the edge middleware."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, redirect_slashes=False)
    register_url_convertor("v1_model", _V1ModelName())  # Starlette's registry; the same convertor every time
    install_routes(app, routes, jobs)
    install_rest_handlers(app)
    limit_fastapi_telemetry(fastapi_telemetry_config(app))
    app.add_middleware(RequestContextMiddleware, max_body_bytes=max_body_bytes, telemetry=telemetry)
    return app


def served_routes(app: FastAPI) -> list[Route]:
    """Every (method, path) the application answers, in registration order (paths without their convertors)."""
    served = []
    for route in app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # type: ignore[attr-defined]
        for method in sorted(getattr(route, "methods", None) or ()):
            served.append(Route(method, path, getattr(route, "summary", "") or ""))
    return served
