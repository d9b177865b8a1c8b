import pytest

from predictors.codecs.text import validate_text
from predictors.codecs.types import InputSpec
from predictors.errors import InvalidInput

SPEC = InputSpec("hypothesis", "text", max_bytes=8)


def test_text_within_the_limit_is_kept() -> None:
    assert validate_text("ein Bär", "hypothesis", SPEC) == "ein Bär"


@pytest.mark.parametrize("value", ["", "  \n", "x" * 9, "ää" * 3])
def test_empty_or_oversized_text_is_invalid(value: str) -> None:
    with pytest.raises(InvalidInput):
        validate_text(value, "hypothesis", SPEC)


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", "\udc80"])
def test_lone_surrogates_are_invalid_input(value: str) -> None:
    # found by the v1 fuzz test: JSON's "\ud800" escape decodes to a str no UTF-8 encoder accepts
    with pytest.raises(InvalidInput, match="lone surrogate"):
        validate_text(value, "hypothesis", SPEC)
