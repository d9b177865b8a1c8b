"""The REST application answers exactly the routes docs/protocol.md lists, and the gRPC service exactly its RPCs."""

from __future__ import annotations

from kserve.model_repository import ModelRepository

from predictors.dataplane.dataplane import PredictorDataPlane
from predictors.server.grpc_service import RPCS
from predictors.server.rest import RestRoutes, build_app, served_routes
from predictors.telemetry.edge import EdgeTelemetry
from tests.support.routes import documented_routes, documented_rpcs


def test_the_application_serves_exactly_the_documented_routes() -> None:
    routes = RestRoutes(PredictorDataPlane(model_registry=ModelRepository()), dict, dict)
    app = build_app(routes, jobs=None, max_body_bytes=1 << 20, telemetry=EdgeTelemetry())
    served = {(route.method, route.path) for route in served_routes(app)}
    assert served == documented_routes()
    assert app.openapi_url is None and app.docs_url is None and app.redoc_url is None
    assert app.router.redirect_slashes is False


def test_the_grpc_service_serves_exactly_the_documented_rpcs() -> None:
    assert set(RPCS) == documented_rpcs() == {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
                                          "ModelMetadata", "ModelInfer"}
