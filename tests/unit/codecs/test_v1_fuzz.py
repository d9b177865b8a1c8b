"""Property: `v1.decode_request` decodes any JSON value it is handed or rejects it with a documented 4xx."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from predictors.codecs import v1
from predictors.codecs.types import InputSpec
from tests.unit.codecs.fuzzing import (
    CONTRACTS,
    base64_texts,
    check_wire,
    contracts,
    json_values,
    mostly,
    names_for,
    only_documented_errors,
    texts,
)

MAX_ITEMS = 4


def instances(inputs: tuple[InputSpec, ...]) -> st.SearchStrategy[Any]:
    """Valid instances with hostile values, instances with unknown/missing fields or wrong types, any JSON."""

    def good(spec: InputSpec) -> st.SearchStrategy[Any]:
        if spec.kind == "image":
            return base64_texts().map(lambda b: {"b64": b}) | base64_texts()
        return mostly(texts, json_values)

    kinds = {spec.name: spec for spec in inputs}
    well_formed = st.fixed_dictionaries(
        {spec.name: good(spec) for spec in inputs if not spec.optional},
        optional={spec.name: good(spec) for spec in inputs if spec.optional},
    )
    loose = st.dictionaries(names_for(inputs), st.none(), max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries(
            {key: (good(kinds[key]) if key in kinds else st.nothing()) | json_values for key in keys}
        )
    )
    return mostly(well_formed, loose | json_values)


def bodies(inputs: tuple[InputSpec, ...]) -> st.SearchStrategy[Any]:
    top = st.fixed_dictionaries(
        {"instances": mostly(st.lists(instances(inputs), min_size=1, max_size=MAX_ITEMS), json_values)},
        optional={"parameters": mostly(st.dictionaries(texts, json_values, max_size=3), json_values)},
    )
    # too many instances; an unknown top-level field
    top = mostly(top, st.tuples(top, st.sampled_from([
        ("instances", [{}] * (MAX_ITEMS + 1)), ("signature_name", "serving_default"), ("inputs", [])
    ])).map(lambda pair: {**pair[0], pair[1][0]: pair[1][1]} if isinstance(pair[0], dict) else pair[0]))
    return mostly(top, json_values)


@example((CONTRACTS["visual-entailment"][0], {"instances": [{"image": "", "hypothesis": "\ud800"}]}))
@given(contracts.flatmap(lambda contract: st.tuples(st.just(contract[0]), bodies(contract[0]))))
def test_any_v1_body_decodes_or_is_a_documented_error(case: tuple[tuple[InputSpec, ...], Any]) -> None:
    inputs, body = case
    with only_documented_errors():
        wire = v1.decode_request(body, inputs, MAX_ITEMS)
        check_wire(wire, inputs, MAX_ITEMS)
        assert wire.protocol == "v1" and isinstance(wire.parameters, dict)
