"""The thresholds of `predictors canary-analysis`: one typed object, defaults here only.

They are read from the chart's values (the ``canaryAnalysis`` block of one or more values files, later files
winning, as Helm merges them) and then from flags (``--min-requests 200``: a flag wins over the files). The
chart's values.yaml lists the same defaults; a test keeps the two equal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

#: a Prometheus duration as the analysis window: 30s, 10m, 1h (one unit)
DURATION = re.compile(r"^(\d+)(s|m|h)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


class ThresholdsError(ValueError):
    """A values file or flag that does not make a valid set of thresholds."""


class Thresholds(BaseModel):
    """What the analysis needs before it decides, and how much worse than stable the canary may be."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    window: str = Field("10m", description="how far back both tracks are compared (a Prometheus duration)")
    min_requests: int = Field(100, ge=1, description="requests each track must have served in the window")
    min_results: int = Field(100, ge=1, description="results each track must have answered for an answer signal "
                                                    "(score, quality, faces, needs_review) to be compared")
    max_error_ratio_increase: float = Field(
        0.01, ge=0, le=1, description="server errors (5xx but 503) per request: canary minus stable")
    max_unavailable_share_increase: float = Field(
        0.05, ge=0, le=1, description="503 answers (SERVICE_BUSY, MODEL_NOT_READY) per request: canary minus stable")
    latency_p99_max_ratio: float = Field(1.5, ge=1, description="canary p99 / stable p99 ...")
    latency_p99_min_increase_seconds: float = Field(
        0.1, ge=0, description="... and canary p99 - stable p99: both must be exceeded to fail")
    max_needs_review_share_increase: float = Field(
        0.05, ge=0, le=1, description="results flagged needs_review per result: canary minus stable")
    answer_shift_p_value: float = Field(
        0.001, gt=0, lt=1, description="chi-squared test of homogeneity of the two answer histograms: a shift "
                                       "needs p below this ...")
    answer_shift_min_distance: float = Field(
        0.1, ge=0, le=1, description="... and a total variation distance between them of at least this")

    @field_validator("window")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not DURATION.match(value):
            raise ValueError(f"{value!r} is not a duration such as 30s, 10m or 1h")
        return value

    @property
    def window_seconds(self) -> int:
        match = DURATION.match(self.window)
        assert match is not None
        return int(match[1]) * _UNIT_SECONDS[match[2]]

    @classmethod
    def flag_names(cls) -> dict[str, str]:
        """field name -> its flag (``min_requests`` -> ``--min-requests``)."""
        return {name: "--" + name.replace("_", "-") for name in cls.model_fields}

    @classmethod
    def load(cls, values_files: Iterable[Path] = (), overrides: Mapping[str, Any] | None = None) -> Thresholds:
        """Defaults, then each values file's ``canaryAnalysis`` block in order, then `overrides` (field names)."""
        merged: dict[str, Any] = {}
        for path in values_files:
            try:
                document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as error:
                raise ThresholdsError(f"values file {path}: {error}") from None
            block = document.get("canaryAnalysis") if isinstance(document, dict) else None
            if block is None:
                continue
            if not isinstance(block, dict):
                raise ThresholdsError(f"values file {path}: canaryAnalysis is not a mapping")
            merged.update({key: value for key, value in block.items() if value is not None})
        fields = cls.model_fields
        by_alias = {fields[name].alias or name: value for name, value in (overrides or {}).items()
                    if value is not None}
        merged.update(by_alias)
        try:
            return cls.model_validate(merged)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
            raise ThresholdsError(f"invalid thresholds: {problems}") from None
