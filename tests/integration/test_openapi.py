"""Our own OpenAPI document (`GET /openapi.json`) against the real server: schemathesis generates requests from it,
valid and invalid, for every operation, and checks every answer against it (documented status, content type,
headers and schema; no internal error; invalid data refused with a 4xx)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.oip_rest import failures_of_every_operation
from tests.support.server import ServerProcess

#: generated requests per operation and mode (the document has ~25 operations for the two served models)
EXAMPLES = 15
CHECKS = [status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
#: the 5xx answers that are the server doing its job (schemathesis's own "no 5xx" check would refuse them: a
#: generated `timeout_ms=1` request is rightly 504 TIMEOUT); 500 INTERNAL_ERROR never is
EXPECTED_5XX = {"MODEL_NOT_READY", "SERVICE_BUSY", "TIMEOUT", "JOBS_UNAVAILABLE", "IMAGE_URL_FAILED"}


def no_internal_error(response: Any) -> None:
    if response.status_code >= 500:
        code = json.loads(response.content).get("code")
        assert code in EXPECTED_5XX, f"{response.status_code} {code}: {response.content[:300]!r}"


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_our_openapi_document_against_the_server(server: ServerProcess, mode: schemathesis.GenerationMode) -> None:
    checks = CHECKS if mode is schemathesis.GenerationMode.NEGATIVE else CHECKS[:-1]
    document = httpx.get(f"{server.url}/openapi.json").json()
    failures, ran, sent = failures_of_every_operation(document, server.url, mode, EXAMPLES, checks,
                                                      no_internal_error)
    print(f"{mode.value}: {ran} operations, {sent} requests")
    assert ran >= len(document["paths"]) and sent >= ran * 3, f"only {ran} operations, {sent} requests were run"
    assert not failures, "\n\n".join(failures)


def test_the_document_is_served_and_describes_each_served_model(server: ServerProcess) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    assert document["openapi"].startswith("3.1") and document["info"]["title"] == "vision-predictors"
    for model in ("general-recognition", "image-classification"):
        predict = document["paths"][f"/v1/models/{model}:predict"]["post"]
        assert {"application/json", "multipart/form-data", "image/jpeg"} <= set(predict["requestBody"]["content"])
        parameters = predict["requestBody"]["content"]["application/json"]["schema"]["properties"]["parameters"]
        assert parameters["properties"]["top_k"]["type"] == "integer"
