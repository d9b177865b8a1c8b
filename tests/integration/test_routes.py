"""Every route the server answers is designed and documented: the list in docs/protocol.md is what `/openapi.json`
describes, each listed route answers, and what KServe would add (the model repository extension, `:explain`, its
docs and OpenAPI, the OpenAI and time-series routes, `/`) does not. Nothing anonymous can take a model out of
service."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.routes import documented_routes
from tests.support.server import ServerProcess

MODELS = ("general-recognition", "image-classification")


def documented_in_openapi(server: ServerProcess) -> set[tuple[str, str]]:
    """(method, path) of the live `/openapi.json`, each served model's own paths read as the template."""
    document = httpx.get(f"{server.url}/openapi.json").json()
    found = set()
    for path, item in document["paths"].items():
        for model in MODELS:
            path = re.sub(rf"/models/{re.escape(model)}(?=/|:|$)", "/models/{model_name}", path)
        found |= {(method.upper(), path) for method in item}
    return found


def test_the_readme_lists_exactly_what_the_openapi_document_describes(server: ServerProcess) -> None:
    assert documented_routes() == documented_in_openapi(server)


def test_every_listed_route_answers(server: ServerProcess) -> None:
    for method, path in sorted(documented_routes()):
        url = server.url + path.format(model_name=MODELS[0], model_version="1", job_id="0" * 32)
        response = httpx.request(method, url, timeout=60, content=b"{}" if method == "POST" else None)
        code = response.json().get("code") if response.headers.get("content-type") == "application/json" else None
        assert code not in ("NOT_FOUND", "METHOD_NOT_ALLOWED"), f"{method} {path}: {response.status_code} {code}"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/docs/oauth2-redirect"),
    ("POST", "/v2/repository/index"),
    ("GET", "/v2/repository/index"),
    ("POST", "/v2/repository/models/general-recognition/load"),
    ("POST", "/v2/repository/models/general-recognition/unload"),
    ("POST", "/v1/models/general-recognition:explain"),
    ("POST", "/v2/models/general-recognition/explain"),
    ("POST", "/v2/models/general-recognition/generate"),
    ("POST", "/openai/v1/completions"),
    ("POST", "/openai/v1/chat/completions"),
    ("GET", "/openai/v1/models"),
    ("GET", "/v2/health"),
    ("GET", "/v2/health/live/"),
    ("GET", "/v2/models/"),
    ("GET", "/v1/models/"),
    ("POST", "/v2/models/general-recognition/infer/"),
])
def test_routes_nobody_designed_are_not_served(server: ServerProcess, method: str, path: str) -> None:
    response = httpx.request(method, server.url + path, timeout=30, follow_redirects=False)
    assert response.status_code == 404, f"{method} {path}: {response.status_code}"
    assert response.json()["code"] == "NOT_FOUND"


def test_another_method_on_a_listed_path_is_405(server: ServerProcess) -> None:
    for method, path in (("POST", "/v2/health/live"), ("DELETE", "/v2/models/general-recognition"),
                         ("GET", "/v2/models/general-recognition/infer"), ("PUT", "/v2/jobs/abc")):
        response = httpx.request(method, server.url + path, timeout=30)
        assert response.status_code == 405 and response.json()["code"] == "METHOD_NOT_ALLOWED", (method, path)


def test_an_anonymous_unload_cannot_take_a_model_out_of_service(server: ServerProcess) -> None:
    """The issue's scenario with KServe's repository extension: unload took the model away for good while
    readiness stayed 200."""
    httpx.post(f"{server.url}/v2/repository/models/general-recognition/unload", timeout=30)
    assert httpx.get(f"{server.url}/v2/models/general-recognition/ready").status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{server.url}/v2/models").json()["models"] == list(MODELS)
