"""The canary checks and verdicts on figures as Prometheus returns them (the real-Prometheus scenarios are in
tests/integration/test_canary_analysis.py), the chi-squared shift test's error rates, and the report."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

from predictors.canary.analysis import (
    SERVER_ERROR_CODES,
    UNAVAILABLE_CODES,
    TrackFigures,
    TrackSelector,
    analyse,
    overall,
    shift_test,
)
from predictors.canary.report import Report
from predictors.canary.thresholds import Thresholds
from predictors.telemetry.metrics import SCORE_BUCKETS

DEFAULTS = Thresholds()


def cumulative(values: Sequence[float], bounds: Sequence[float] = SCORE_BUCKETS) -> list[tuple[float, float]]:
    """A Prometheus histogram's cumulative buckets (+Inf last) of `values`."""
    ordered = np.sort(np.asarray(values))
    out = [(bound, float(np.searchsorted(ordered, bound, side="right"))) for bound in bounds]
    return [*out, (float("inf"), float(len(ordered)))]


def figures(requests: int = 1000, errors: int = 0, busy: int = 0, p99: float = 0.05,
            scores: Sequence[float] | None = None, review: tuple[int, int] | None = None) -> TrackFigures:
    by_code = {"OK": float(requests - errors - busy)}
    if errors:
        by_code["INTERNAL_ERROR"] = float(errors)
    if busy:
        by_code["SERVICE_BUSY"] = float(busy)
    track = TrackFigures("x", float(requests), by_code, p99)
    if scores is not None:
        track.histograms["predictors_answer_top_score"] = cumulative(scores)
        track.results = float(len(scores))
    if review is not None:
        track.needs_review, track.results = float(review[0]), float(review[1])
    return track


def scores(seed: int, n: int = 1000, a: float = 5.0, b: float = 2.0) -> list[float]:
    return list(np.random.default_rng(seed).beta(a, b, n))


def verdict_of(stable: TrackFigures, canary: TrackFigures) -> str:
    return analyse("m", stable, canary, DEFAULTS).verdict


def test_error_codes_come_from_the_documented_table() -> None:
    assert set(SERVER_ERROR_CODES) == {"INTERNAL_ERROR", "TIMEOUT"}
    assert set(UNAVAILABLE_CODES) == {"SERVICE_BUSY", "MODEL_NOT_READY", "JOBS_UNAVAILABLE"}


def test_a_canary_like_stable_is_promoted() -> None:
    analysis = analyse("m", figures(errors=2, scores=scores(1)), figures(errors=3, scores=scores(2)), DEFAULTS)
    assert analysis.verdict == "promote", analysis.checks
    assert {c.name: c.outcome for c in analysis.checks} == {
        "traffic": "pass", "error ratio": "pass", "503 share": "pass", "p99 latency": "pass",
        "top-1 score": "pass", "quality score": "skip", "faces per image": "skip", "needs_review share": "skip"}


@pytest.mark.parametrize(("canary", "failed"), [
    (figures(errors=30), "error ratio"),
    (figures(busy=80), "503 share"),
    (figures(p99=0.5), "p99 latency"),
    (figures(scores=scores(2, a=2, b=5)), "top-1 score"),
    (figures(review=(150, 1000)), "needs_review share"),
])
def test_a_worse_canary_is_rolled_back_naming_the_check(canary: TrackFigures, failed: str) -> None:
    stable = figures(scores=scores(1) if "top-1" in failed else None,
                     review=(40, 1000) if "review" in failed else None)
    analysis = analyse("m", stable, canary, DEFAULTS)
    assert analysis.verdict == "rollback"
    assert [c.name for c in analysis.checks if c.outcome == "fail"] == [failed]
    assert analysis.reasons and analysis.reasons[0].startswith(failed)


def test_latency_must_exceed_both_the_ratio_and_the_increase() -> None:
    # 3x slower but only 4 ms more: noise on a fast model, not a regression
    assert verdict_of(figures(p99=0.002), figures(p99=0.006)) == "promote"
    # 90 ms more but 1.2x: within the ratio
    assert verdict_of(figures(p99=0.45), figures(p99=0.54)) == "promote"
    assert verdict_of(figures(p99=0.2), figures(p99=0.35)) == "rollback"


def test_too_little_traffic_is_undecided_even_when_the_canary_looks_bad() -> None:
    analysis = analyse("m", figures(), figures(requests=40, errors=20), DEFAULTS)
    assert analysis.verdict == "undecided"
    assert analysis.checks[0].outcome == "undecided" and "canary" in analysis.checks[0].detail
    assert "not judged" in next(c for c in analysis.checks if c.name == "error ratio").detail
    assert verdict_of(figures(requests=0), figures()) == "undecided"


def test_too_few_answers_leave_the_answer_check_undecided() -> None:
    analysis = analyse("m", figures(scores=scores(1)), figures(scores=scores(2, n=30)), DEFAULTS)
    assert analysis.verdict == "undecided"
    assert next(c for c in analysis.checks if c.name == "top-1 score").outcome == "undecided"


def test_overall_verdict() -> None:
    promote = analyse("a", figures(), figures(), DEFAULTS)
    rollback = analyse("b", figures(), figures(errors=100), DEFAULTS)
    undecided = analyse("c", figures(), figures(requests=1), DEFAULTS)
    assert overall([promote, promote]) == "promote"
    assert overall([promote, undecided]) == "undecided"
    assert overall([undecided, rollback, promote]) == "rollback"
    assert overall([]) == "undecided"


def test_shift_test_false_and_true_positive_rates() -> None:
    """Same distribution: the test rejects at about its level (chi-squared is valid after merging sparse
    buckets); with the distance floor, never. A real shift: always."""
    trials = 300
    p_same = [shift_test(cumulative(scores(2 * i)), cumulative(scores(2 * i + 1))).p_value for i in range(trials)]
    assert sum(p < 0.05 for p in p_same) / trials < 0.1  # the test's level is 5 %: no gross inflation
    same = [shift_test(cumulative(scores(2 * i)), cumulative(scores(2 * i + 1))) for i in range(trials)]
    assert not any(t.p_value < DEFAULTS.answer_shift_p_value and t.distance >= DEFAULTS.answer_shift_min_distance
                   for t in same)
    shifted = [shift_test(cumulative(scores(i)), cumulative(scores(1000 + i, a=3, b=3))) for i in range(50)]
    assert all(t.p_value < 1e-6 and t.distance > 0.2 for t in shifted)


def test_shift_test_merges_sparse_buckets_and_handles_empty_ones() -> None:
    one_bucket = shift_test(cumulative([0.97] * 200), cumulative([0.98] * 200))
    assert one_bucket.groups == 1 and one_bucket.p_value == 1.0 and one_bucket.distance == 0.0
    assert shift_test([], cumulative([0.5] * 10)).p_value == 1.0
    # increase() extrapolates: fractional cumulative counts are rounded per bucket
    test = shift_test([(0.5, 100.4), (1.0, 200.6), (float("inf"), 200.6)],
                      [(0.5, 10.2), (1.0, 200.0), (float("inf"), 200.0)])
    assert (test.stable_count, test.canary_count, test.groups) == (200, 200, 2)
    assert test.p_value < 1e-10 and test.distance == pytest.approx(0.45, abs=0.01)


def test_selectors() -> None:
    assert TrackSelector.of("general-recognition", "canary").matchers == \
        'model="general-recognition",vision_predictors_io_track="canary"'
    assert TrackSelector.of("m", "stable", 'serving_knative_dev_revision="m-00001"', 'namespace="prod",').matchers \
        == 'model="m",serving_knative_dev_revision="m-00001",namespace="prod"'


def test_report_text_markdown_and_json() -> None:
    analyses = [analyse("m", figures(), figures(errors=50), DEFAULTS)]
    report = Report(overall(analyses), analyses, DEFAULTS, "http://prometheus:9090", 1_800_000_000, 0.25)
    assert report.exit_code == 1
    text = report.text()
    assert "model m: ROLL BACK" in text and "verdict: ROLL BACK (exit 1)" in text
    assert "error ratio" in text and "5.00 %" in text
    markdown = report.markdown()
    assert markdown.startswith("## Canary analysis: ROLL BACK")
    assert "| error ratio | 0.00 % | 5.00 % |" in markdown
    assert "increase(predictors_requests_total{x}[10m])" in markdown
    document = json.loads(report.json())
    assert document["verdict"] == "rollback" and document["exit_code"] == 1
    assert document["thresholds"]["maxErrorRatioIncrease"] == 0.01
    assert document["models"][0]["reasons"][0].startswith("error ratio: canary 5.00 %")
