"""`/openapi.json` for every built-in model: a valid OpenAPI document (schemathesis loads every operation) that
states each model's own inputs, outputs and parameters. The integration tier runs schemathesis over it against the
real server for the two classifiers; face enhancement and entailment (seconds per generated image on a CPU) are
checked here, as documents."""

from __future__ import annotations

import schemathesis
from schemathesis.core.result import Err

from predictors.models.catalog import MODELS
from predictors.models.registry import predictor_class
from predictors.server.openapi import ServedModel, openapi_document
from predictors.settings import Settings


def served() -> list[ServedModel]:
    models = []
    for registration in MODELS:
        cls = predictor_class(registration.name)
        models.append(ServedModel(registration.name, cls.inputs, cls.outputs, cls.Parameters))
    return models


def test_every_operation_of_the_document_loads() -> None:
    for settings in (Settings(), Settings(image_url_allow=("images.example.com",))):
        schema = schemathesis.openapi.from_dict(openapi_document(settings, served()))
        operations = list(schema.get_all_operations())
        errors = [str(result.err()) for result in operations if isinstance(result, Err)]
        assert errors == []
        assert len(operations) >= 7 * len(served()) + 10


def test_each_model_is_described_with_its_own_contract() -> None:
    document = openapi_document(Settings(), served())
    paths = document["paths"]
    entailment = paths["/v1/models/visual-entailment:predict"]["post"]
    instance = entailment["requestBody"]["content"]["application/json"]["schema"]["properties"]["instances"]["items"]
    assert instance["required"] == ["image", "hypothesis"] and set(instance["properties"]) == {
        "image", "hypothesis", "premise"}
    assert {p["name"] for p in entailment["parameters"] if p["in"] == "query"} >= {"hypothesis", "premise"}
    face = paths["/v1/models/face-enhancement:predict"]["post"]
    assert {"image/jpeg", "image/png"} <= set(face["responses"]["200"]["content"])
    assert "422" in face["responses"]
    face_parameters = face["requestBody"]["content"]["application/json"]["schema"]["properties"]["parameters"]
    assert face_parameters["properties"]["output_format"]["enum"] == ["jpeg", "png"]
    assert face_parameters["additionalProperties"] is False
    v2 = paths["/v2/models/general-recognition/infer"]["post"]["requestBody"]["content"]["application/json"]
    assert v2["schema"]["properties"]["inputs"]["items"]["properties"]["name"]["enum"] == ["image"]
    codes = set(document["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
    assert {"INVALID_INPUT", "IMAGE_URL_REFUSED", "MODEL_NOT_FOUND", "JOBS_DISABLED"} <= codes


def test_images_by_url_appear_only_when_on() -> None:
    def form(settings: Settings) -> dict:
        document = openapi_document(settings, served())
        return document["paths"]["/v1/models/general-recognition:predict"]["post"]["requestBody"]["content"]

    assert "image_url" not in form(Settings())["multipart/form-data"]["schema"]["properties"]
    on = form(Settings(image_url_allow=("images.example.com",)))
    assert "image_url" in on["multipart/form-data"]["schema"]["properties"]
    image = on["application/json"]["schema"]["properties"]["instances"]["items"]["properties"]["image"]
    assert {"required": ["url"]}.items() <= next(c for c in image["oneOf"] if "url" in c.get("properties", {})).items()
