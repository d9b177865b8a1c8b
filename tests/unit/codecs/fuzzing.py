"""What every fuzzed decoder must honour, and the hypothesis strategies the codec fuzz tests share.

A decoder either returns its result or raises an error the edge maps to a documented 4xx code (the
error table in docs/errors.md); anything else escaping it would reach the caller as 500 INTERNAL_ERROR.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from fastapi.exceptions import RequestValidationError
from hypothesis import event
from hypothesis import strategies as st
from pydantic import ValidationError

from predictors.codecs.types import InputSpec, OutputSpec, WireRequest
from predictors.dataplane.errors import as_predictor_error
from predictors.errors import InternalError
from tests.integration.test_documented_codes import documented_codes

DOCUMENTED = documented_codes()


@contextlib.contextmanager
def only_documented_errors() -> Iterator[None]:
    """Fails the test when the block raises anything the edge would not answer with a documented 4xx."""
    try:
        yield
    except ValidationError as error:  # FastAPI wraps a body's validation errors like this
        _check(RequestValidationError(error.errors()), error)
    except Exception as error:  # noqa: BLE001 - the property under test
        _check(error, error)


def _check(error: BaseException, original: BaseException) -> None:
    mapped = as_predictor_error(error)
    if isinstance(mapped, InternalError):
        raise AssertionError(f"{type(original).__name__} escaped the codec: {original!r}") from original
    assert mapped.code in DOCUMENTED, f"{mapped.code} is not in the error table (docs/errors.md)"
    assert 400 <= int(mapped.status) < 500, mapped
    event(f"rejected: {mapped.code}")  # `pytest --hypothesis-show-statistics` shows the mix


def check_wire(wire: WireRequest, inputs: tuple[InputSpec, ...], max_items: int) -> None:
    """A decoded request is what the predictors are promised: 1..max_items items of the declared kinds."""
    event("decoded")
    assert 1 <= len(wire.items) <= max_items
    names = {spec.name: spec for spec in inputs}
    for item in wire.items:
        assert set(item) <= set(names)
        for spec in inputs:
            if spec.name not in item:
                assert spec.optional
                continue
            value = item[spec.name]
            if spec.kind == "image":
                assert isinstance(value, bytes)
            else:
                assert isinstance(value, str) and value.strip()
                assert len(value.encode("utf-8")) <= spec.max_bytes  # strict UTF-8: no lone surrogates


# ---- the models' contracts (copied from nothing: the predictor classes themselves) ------------------


def model_contracts() -> dict[str, tuple[tuple[InputSpec, ...], tuple[OutputSpec, ...]]]:
    from predictors.models.classification import ClassifierPredictor
    from predictors.models.face_enhancement.predictor import FaceEnhancementPredictor
    from predictors.models.visual_entailment.predictor import VisualEntailmentPredictor

    return {
        "classifier": (ClassifierPredictor.inputs, ClassifierPredictor.outputs),
        "face-enhancement": (FaceEnhancementPredictor.inputs, FaceEnhancementPredictor.outputs),
        "visual-entailment": (VisualEntailmentPredictor.inputs, VisualEntailmentPredictor.outputs),
    }


CONTRACTS = model_contracts()
contracts = st.sampled_from(sorted(CONTRACTS)).map(lambda name: CONTRACTS[name])

# ---- strategies ---------------------------------------------------------------------------------


def mostly(likely: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`likely` three times out of four: keeps enough near-valid requests that decoding succeeds."""
    return st.one_of(likely, likely, likely, other)


#: any text, lone surrogates included (what json.loads makes of "\ud800")
texts = mostly(st.text(st.characters(codec=None, exclude_categories=()), max_size=40), st.sampled_from(
    ["", " ", "\ud800", "a\udfffb", "\x00", "é" * 600, "x" * 2100, "\n\t"])
)
#: names: the real ones most of the time, anything else sometimes
def names_for(specs: tuple[Any, ...]) -> st.SearchStrategy[str]:
    return mostly(st.sampled_from([spec.name for spec in specs]), texts)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
)
#: any JSON-like value (what a JSON parser may hand over, NaN/Infinity included)
json_values = st.recursive(
    scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=20,
)
#: image payload bytes: nothing, noise, or the magic numbers of real formats followed by noise
image_bytes = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"BM", b"GIF89a"]).flatmap(
        lambda magic: st.binary(max_size=48).map(lambda rest: magic + rest)
    ),
)
#: base64 text: valid encodings of image bytes, or arbitrary text
def base64_texts() -> st.SearchStrategy[str]:
    import base64

    return mostly(image_bytes.map(lambda data: base64.b64encode(data).decode("ascii")), texts)
