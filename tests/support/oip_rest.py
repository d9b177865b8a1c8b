"""The Open Inference Protocol's REST OpenAPI document (`open_inference_rest.yaml`), as the conformance tests read it.

The published document is used as it is, but for its known quirks (../shared/specs/oip/SOURCE.txt): its model paths
are written ``/v2/models/${MODEL_NAME}/...`` (read as ``{MODEL_NAME}``), and only the versioned ones are listed
although ``inference_rest.md`` marks ``[/versions/<model_version>]`` optional (the unversioned paths are added, the
same operations without the version). The model name may be restricted to the served models, so that generated
requests reach a model rather than a 404.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import hypothesis
import hypothesis.errors
import jsonschema
import schemathesis
import yaml

from tests.support.pinned import oip_spec

VERSION_SEGMENT = "/versions/{MODEL_VERSION}"


def oip_document(models: Sequence[str] = ()) -> dict[str, Any]:
    document = yaml.safe_load(oip_spec("open_inference_rest.yaml").read_text(encoding="utf-8"))
    paths: dict[str, Any] = {}
    for path, item in document["paths"].items():
        path = path.replace("${", "{")
        paths[path] = item
        if VERSION_SEGMENT in path:
            unversioned = copy.deepcopy(item)
            unversioned["parameters"] = [p for p in unversioned.get("parameters", []) if p["name"] != "MODEL_VERSION"]
            for operation in unversioned.values():
                if isinstance(operation, dict) and "operationId" in operation:
                    operation["operationId"] += "-unversioned"
            paths[path.replace(VERSION_SEGMENT, "")] = unversioned
    if models:
        for item in paths.values():
            for parameter in item.get("parameters", []):
                if parameter["name"] == "MODEL_NAME":
                    parameter["schema"] = {"type": "string", "enum": list(models)}
    document["paths"] = paths
    return document


def oip_validator(name: str) -> jsonschema.protocols.Validator:
    """A JSON Schema validator for the document's component `name` (its `$ref`s resolved within the document)."""
    document = oip_document()
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft7Validator(schema)


def oip_errors(name: str, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in oip_validator(name).iter_errors(instance)]


def failures_of_every_operation(document: dict[str, Any], base_url: str, mode: schemathesis.GenerationMode,
                                max_examples: int, checks: Sequence[Any],
                                extra_check: Callable[[Any], None] | None = None) -> tuple[list[str], int, int]:
    """Run schemathesis over every operation of `document` against `base_url`: up to `max_examples` generated
    requests (`mode`: valid or invalid data) per operation, each answer validated with `checks` (and
    `extra_check(response)`). Returns (one message per failing operation, operations run, requests sent).

    Derandomized and without an example database, so every run sends the same requests; no shrinking (a failure
    is reported with the request schemathesis generated, as a curl command). schemathesis's pytest integration is
    not used: its lazy schemas need pytest's private `Node._nodeid`, which pytest 9.2 no longer has."""
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=base_url)
    failures: list[str] = []
    ran = 0
    sent = [0]
    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            strategy = operation.as_strategy(generation_mode=mode)
        except Exception as error:  # noqa: BLE001 - an operation schemathesis cannot negate is reported, not run
            failures.append(f"{operation.label}: no {mode.value} strategy ({error})")
            continue

        @hypothesis.settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                             phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(strategy)
        def run(case: Any) -> None:
            response = case.call(timeout=60)
            sent[0] += 1
            case.validate_response(response, checks=list(checks))
            if extra_check is not None:
                extra_check(response)

        ran += 1
        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            continue  # nothing to negate in this operation (no parameters, no body)
        except Exception as error:  # noqa: BLE001 - collected: every failing operation is reported
            failures.append(f"{operation.label} ({mode.value}): {error}")
    return failures, ran, sent[0]
