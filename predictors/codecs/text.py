"""Validation of text inputs (hypotheses, premises ...)."""

from __future__ import annotations

from predictors.codecs.types import InputSpec
from predictors.errors import InvalidInput


def validate_text(value: str, field: str, spec: InputSpec) -> str:
    if not value.strip():
        raise InvalidInput(f"{field} is empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        # JSON can escape a lone surrogate (\ud800): that is not text, and tokenizers and logs choke on it.
        raise InvalidInput(f"{field} is not valid Unicode text (it contains a lone surrogate)") from None
    if size > spec.max_bytes:
        raise InvalidInput(f"{field} is {size} bytes of UTF-8; the limit is {spec.max_bytes}")
    return value
