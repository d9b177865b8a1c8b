"""Canary analysis: what the canary track of a model did over a window, next to what stable did, and the verdict.

The two tracks are told apart by the label the chart's PodMonitor/ServiceMonitor copies from the pods
(``vision_predictors_io_track`` = ``stable`` / ``canary``; KServe merges the canary's labels over the stable
predictor's, so each Deployment's pods carry their own track). Every figure is one PromQL query over the window
(``increase``/``rate``), read at one instant; the checks, in order:

1. traffic: each track served at least ``min_requests`` requests, else the verdict is *undecided* whatever else;
2. error ratio: server errors (5xx but 503) per request, canary minus stable, at most ``max_error_ratio_increase``;
3. 503 share: SERVICE_BUSY / MODEL_NOT_READY answers per request, at most ``max_unavailable_share_increase`` more;
4. p99 latency: fails when the canary's p99 exceeds stable's ``latency_p99_max_ratio`` times *and* by
   ``latency_p99_min_increase_seconds`` (a ratio alone would fail a canary 3 ms slower than a 2 ms stable);
5. answers: the histograms of the top-1 score, the quality score and the faces per image are compared with
   Pearson's chi-squared test of homogeneity (adjacent buckets merged until every expected count is at least 5);
   a shift fails the canary when p < ``answer_shift_p_value`` *and* the total variation distance between the two
   (merged) histograms is at least ``answer_shift_min_distance`` (significance alone would fail the smallest
   shift once traffic is large); the needs_review share may rise by ``max_needs_review_share_increase``.

Any failed check rolls the canary back; otherwise any undecided check leaves it undecided; otherwise promote.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from predictors.canary.prometheus import Prometheus, Sample
from predictors.canary.thresholds import Thresholds
from predictors.errors import PredictorError

Outcome = Literal["pass", "fail", "undecided", "skip"]
Verdict = Literal["promote", "rollback", "undecided"]

#: exit code of `predictors canary-analysis` per verdict
EXIT_CODES: dict[Verdict, int] = {"promote": 0, "rollback": 1, "undecided": 2}

#: the label the chart's monitor copies from the pod label vision-predictors.io/track
TRACK_LABEL = "vision_predictors_io_track"
#: the server's own label on every predictors_* series: the model's name in the API
MODEL_LABEL = "model"

#: a chi-squared test needs every expected cell count at least this large
MIN_EXPECTED_COUNT = 5

#: answer signals compared as distributions: (check name, histogram metric)
ANSWER_HISTOGRAMS = (
    ("top-1 score", "predictors_answer_top_score"),
    ("quality score", "predictors_answer_quality_score"),
    ("faces per image", "predictors_answer_faces"),
)


def _error_codes(keep: Callable[[int], bool]) -> tuple[str, ...]:
    """The documented codes (`predictors.errors`) whose HTTP status `keep` accepts; a class that declares no code
    of its own (a base such as RetryLater) answers with none."""
    codes: set[str] = set()
    pending: list[type[PredictorError]] = [PredictorError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        own_code = cls is PredictorError or all(getattr(base, "code", None) != cls.code for base in cls.__bases__)
        if own_code and keep(int(cls.status)):
            codes.add(cls.code)
    return tuple(sorted(codes))


#: the server's failures: not the client's (4xx), not "come back later" (503), not an image host's the request named
#: (502 `IMAGE_URL_FAILED`: it fails alike on both tracks and says nothing of the canary)
SERVER_ERROR_CODES = _error_codes(lambda status: status >= 500 and status not in (502, 503))
#: 503: busy (back-pressure) or not ready
UNAVAILABLE_CODES = _error_codes(lambda status: status == 503)


@dataclass(frozen=True)
class TrackSelector:
    """PromQL label matchers of one track of one model, e.g. ``model="m",vision_predictors_io_track="canary"``."""

    track: str
    matchers: str

    @classmethod
    def of(cls, model: str, track: str, track_matcher: str | None = None, extra: str = "") -> TrackSelector:
        parts = [f'{MODEL_LABEL}="{_escape(model)}"', track_matcher or f'{TRACK_LABEL}="{track}"']
        if extra.strip():
            parts.append(extra.strip().strip(","))
        return cls(track, ",".join(parts))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass
class TrackFigures:
    """One track over the window, as Prometheus answered."""

    selector: str
    requests: float = 0.0
    by_code: dict[str, float] = field(default_factory=dict)
    p99_seconds: float | None = None
    results: float | None = None
    needs_review: float | None = None
    #: histogram metric -> [(upper bound, cumulative count)], +Inf last; absent when the series do not exist
    histograms: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def share(self, codes: Iterable[str]) -> float | None:
        if self.requests <= 0:
            return None
        return sum(self.by_code.get(code, 0.0) for code in codes) / self.requests


def queries(selector: str, window: str) -> dict[str, str]:
    """The PromQL of every figure of one track (also printed in the report, to rerun by hand)."""
    queries = {
        "requests_by_code": f"sum by (code) (increase(predictors_requests_total{{{selector}}}[{window}]))",
        "p99_seconds": "histogram_quantile(0.99, sum by (le) "
                       f"(rate(predictors_request_duration_seconds_bucket{{{selector}}}[{window}])))",
        "results": f"sum(increase(predictors_results_total{{{selector}}}[{window}]))",
        "needs_review": f"sum(increase(predictors_results_needing_review_total{{{selector}}}[{window}]))",
    }
    for _, metric in ANSWER_HISTOGRAMS:
        queries[metric] = f"sum by (le) (increase({metric}_bucket{{{selector}}}[{window}]))"
    return queries


def measure(prometheus: Prometheus, selector: str, window: str) -> TrackFigures:
    figures = TrackFigures(selector)
    q = queries(selector, window)
    for sample in prometheus.query(q["requests_by_code"]):
        figures.by_code[sample.labels.get("code", "")] = sample.value
    figures.requests = sum(figures.by_code.values())
    figures.p99_seconds = prometheus.scalar(q["p99_seconds"])
    figures.results = prometheus.scalar(q["results"])
    figures.needs_review = prometheus.scalar(q["needs_review"])
    for _, metric in ANSWER_HISTOGRAMS:
        buckets = _cumulative(prometheus.query(q[metric]))
        if buckets:
            figures.histograms[metric] = buckets
    return figures


def _cumulative(samples: Sequence[Sample]) -> list[tuple[float, float]]:
    return sorted((float(sample.labels["le"]), sample.value) for sample in samples if "le" in sample.labels)


@dataclass
class Check:
    name: str
    outcome: Outcome
    stable: str
    canary: str
    threshold: str
    detail: str = ""


@dataclass
class ModelAnalysis:
    model: str
    verdict: Verdict
    checks: list[Check]
    stable: TrackFigures
    canary: TrackFigures

    @property
    def reasons(self) -> list[str]:
        wanted = "fail" if self.verdict == "rollback" else "undecided"
        return [f"{c.name}: {c.detail}" for c in self.checks if c.outcome == wanted]

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "verdict": self.verdict, "reasons": self.reasons,
                "checks": [asdict(check) for check in self.checks],
                "stable": asdict(self.stable), "canary": asdict(self.canary)}


def analyse(model: str, stable: TrackFigures, canary: TrackFigures, thresholds: Thresholds) -> ModelAnalysis:
    """The checks and verdict of one model (pure: the figures come from `measure`)."""
    checks = [_traffic(stable, canary, thresholds)]
    enough_traffic = checks[0].outcome == "pass"
    checks.append(_share_check("error ratio", stable, canary, SERVER_ERROR_CODES,
                               thresholds.max_error_ratio_increase))
    checks.append(_share_check("503 share", stable, canary, UNAVAILABLE_CODES,
                               thresholds.max_unavailable_share_increase))
    checks.append(_latency(stable, canary, thresholds))
    for name, metric in ANSWER_HISTOGRAMS:
        checks.append(_answer_shift(name, stable.histograms.get(metric), canary.histograms.get(metric), thresholds))
    checks.append(_needs_review(stable, canary, thresholds))
    if not enough_traffic:
        # not judged on too little traffic: a verdict needs the traffic first
        for check in checks[1:]:
            if check.outcome == "fail":
                check.outcome = "undecided"
                check.detail += " (not judged: too little traffic)"
    outcomes = {check.outcome for check in checks}
    verdict: Verdict = "rollback" if "fail" in outcomes else "undecided" if "undecided" in outcomes else "promote"
    return ModelAnalysis(model, verdict, checks, stable, canary)


def overall(analyses: Sequence[ModelAnalysis]) -> Verdict:
    """Roll back if any model must, promote only if every model may."""
    verdicts = {analysis.verdict for analysis in analyses}
    return "rollback" if "rollback" in verdicts else "undecided" if "undecided" in verdicts or not verdicts \
        else "promote"


# ---- the checks ----------------------------------------------------------------------------------


def _traffic(stable: TrackFigures, canary: TrackFigures, t: Thresholds) -> Check:
    short = [name for name, f in (("stable", stable), ("canary", canary)) if f.requests < t.min_requests]
    return Check("traffic", "undecided" if short else "pass", f"{stable.requests:.0f} requests",
                 f"{canary.requests:.0f} requests", f">= {t.min_requests} requests per track in {t.window}",
                 f"too little traffic on {' and '.join(short)}" if short else "")


def _share_check(name: str, stable: TrackFigures, canary: TrackFigures, codes: Sequence[str],
                 max_increase: float) -> Check:
    before, after = stable.share(codes), canary.share(codes)
    threshold = f"canary <= stable + {_pct(max_increase)} ({', '.join(codes)})"
    if before is None or after is None:
        return Check(name, "undecided", _pct(before), _pct(after), threshold, "no requests to divide by")
    increase = after - before
    failed = increase > max_increase
    detail = f"canary {_pct(after)} vs stable {_pct(before)} (+{_pct(increase)} > {_pct(max_increase)})" \
        if failed else ""
    return Check(name, "fail" if failed else "pass", _pct(before), _pct(after), threshold, detail)


def _latency(stable: TrackFigures, canary: TrackFigures, t: Thresholds) -> Check:
    threshold = (f"fails above stable x {t.latency_p99_max_ratio:g} and stable + "
                 f"{t.latency_p99_min_increase_seconds * 1000:g} ms")
    before, after = stable.p99_seconds, canary.p99_seconds
    if before is None or after is None:
        return Check("p99 latency", "undecided", _ms(before), _ms(after), threshold, "no latency observed")
    limit = max(before * t.latency_p99_max_ratio, before + t.latency_p99_min_increase_seconds)
    failed = after > limit
    detail = f"canary {_ms(after)} > {_ms(limit)} (stable {_ms(before)})" if failed else ""
    return Check("p99 latency", "fail" if failed else "pass", _ms(before), _ms(after), threshold, detail)


def _needs_review(stable: TrackFigures, canary: TrackFigures, t: Thresholds) -> Check:
    threshold = f"canary <= stable + {_pct(t.max_needs_review_share_increase)}"
    if stable.needs_review is None and canary.needs_review is None:
        return Check("needs_review share", "skip", "-", "-", threshold, "the model flags no results for review")
    counts = [(f.needs_review or 0.0, f.results or 0.0) for f in (stable, canary)]
    if any(results < t.min_results for _, results in counts):
        return Check("needs_review share", "undecided", f"{counts[0][1]:.0f} results", f"{counts[1][1]:.0f} results",
                     threshold, f"fewer than {t.min_results} results on a track")
    before, after = (flagged / results for flagged, results in counts)
    increase = after - before
    failed = increase > t.max_needs_review_share_increase
    detail = f"canary {_pct(after)} vs stable {_pct(before)}" if failed else ""
    return Check("needs_review share", "fail" if failed else "pass", _pct(before), _pct(after), threshold, detail)


@dataclass(frozen=True)
class ShiftTest:
    """The chi-squared test of homogeneity of two histograms and their total variation distance."""

    p_value: float
    distance: float
    groups: int
    stable_count: int
    canary_count: int


def shift_test(stable: Sequence[tuple[float, float]], canary: Sequence[tuple[float, float]]) -> ShiftTest:
    """Compare two cumulative histograms with the same bucket bounds (Prometheus' ``le`` buckets)."""
    bounds = sorted({le for le, _ in stable} | {le for le, _ in canary})
    rows = [_bucket_counts(histogram, bounds) for histogram in (stable, canary)]
    totals = [sum(row) for row in rows]
    if min(totals) == 0:
        return ShiftTest(1.0, 0.0, 0, *totals)
    grouped = _merge_sparse(rows, totals)
    distance = 0.5 * sum(abs(s / totals[0] - c / totals[1]) for s, c in zip(*grouped, strict=True))
    if len(grouped[0]) < 2:
        return ShiftTest(1.0, distance, len(grouped[0]), *totals)
    from scipy.stats import chi2_contingency  # a second or so to import: only when a test runs

    result = chi2_contingency(grouped, correction=False)
    return ShiftTest(float(result.pvalue), distance, len(grouped[0]), *totals)


def _bucket_counts(cumulative: Sequence[tuple[float, float]], bounds: Sequence[float]) -> list[int]:
    """Per-bucket counts (whole numbers: ``increase`` extrapolates to fractions) from cumulative ones."""
    by_bound = dict(cumulative)
    counts, previous = [], 0.0
    for bound in bounds:
        value = by_bound.get(bound, previous)
        counts.append(max(0, round(value - previous)))
        previous = max(previous, value)
    return counts


def _merge_sparse(rows: list[list[int]], totals: list[int]) -> list[list[int]]:
    """Adjacent buckets merged until each group's expected count is at least `MIN_EXPECTED_COUNT` in both rows."""
    n = sum(totals)
    smallest = min(totals)
    groups: list[list[int]] = [[], []]
    pending = [0, 0]
    for stable_count, canary_count in zip(*rows, strict=True):
        pending = [pending[0] + stable_count, pending[1] + canary_count]
        if sum(pending) * smallest / n >= MIN_EXPECTED_COUNT:
            groups[0].append(pending[0])
            groups[1].append(pending[1])
            pending = [0, 0]
    if any(pending):
        if groups[0]:  # a sparse tail joins the last group
            groups[0][-1] += pending[0]
            groups[1][-1] += pending[1]
        else:
            groups = [[pending[0]], [pending[1]]]
    return groups


def _answer_shift(name: str, stable: list[tuple[float, float]] | None, canary: list[tuple[float, float]] | None,
                  t: Thresholds) -> Check:
    threshold = (f"shift if chi-squared p < {t.answer_shift_p_value:g} and total variation distance >= "
                 f"{t.answer_shift_min_distance:g}")
    if stable is None and canary is None:
        return Check(name, "skip", "-", "-", threshold, "the model gives no such answer")
    test = shift_test(stable or [], canary or [])
    counts = f"{test.stable_count} answers", f"{test.canary_count} answers"
    if min(test.stable_count, test.canary_count) < t.min_results:
        return Check(name, "undecided", *counts, threshold, f"fewer than {t.min_results} answers on a track")
    failed = test.p_value < t.answer_shift_p_value and test.distance >= t.answer_shift_min_distance
    summary = f"p = {test.p_value:.3g}, distance {test.distance:.3f} over {test.groups} bucket groups"
    return Check(name, "fail" if failed else "pass", *counts, threshold,
                 ("answers shifted: " if failed else "") + summary)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f} %"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.1f} ms"
