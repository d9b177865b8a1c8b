"""The chart documents and sizes exactly the models the package registers (`predictors.models.catalog`)."""

from __future__ import annotations

import json
import re

import yaml

from predictors.models.catalog import MODELS

from .conftest import CHART

NAMES = [model.name for model in MODELS]


def test_values_size_every_registered_model_and_no_other() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert list(values["resourcePresets"]) == NAMES
    assert list(values["cudaResourcePresets"]) == NAMES


def test_values_comment_and_schema_list_the_registered_predictors() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = re.search(r"^#\s+predictor:\s+(.+)\.$", text, re.M)
    assert documented is not None, "values.yaml no longer documents a model's `predictor`"
    assert [name.strip() for name in documented.group(1).split("|")] == NAMES
    schema = json.loads((CHART / "values.schema.json").read_text())
    definitions = json.dumps(schema)
    enums = [e for e in re.findall(r'"enum": (\[[^\]]*\])', definitions) if "general-recognition" in e]
    assert enums and all(json.loads(e) == NAMES for e in enums)
    for presets in ("resourcePresets", "cudaResourcePresets"):
        block = schema["properties"][presets]
        # properties: a JSON object, whose keys the generator writes sorted; required: in values.yaml's order
        assert sorted(block["properties"]) == sorted(NAMES) and block["required"] == NAMES


def test_chart_readme_names_the_registered_models() -> None:
    opening = (CHART / "README.md").read_text().split("\n\n", 2)[1]
    assert re.findall(r"`([a-z-]+)`", opening.split(")")[0]) == NAMES
