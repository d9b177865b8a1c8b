"""Thresholds: defaults, values files (the chart's canaryAnalysis block), flags; the chart lists the defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from predictors.canary.thresholds import Thresholds, ThresholdsError

REPO = Path(__file__).resolve().parents[3]


def test_the_charts_values_list_the_commands_defaults() -> None:
    values = yaml.safe_load((REPO / "charts" / "vision-predictors" / "values.yaml").read_text())
    assert values["canaryAnalysis"] == Thresholds().model_dump(by_alias=True)


def test_values_files_merge_in_order_and_flags_win(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(yaml.safe_dump({"canaryAnalysis": {"minRequests": 500, "window": "30m"}, "models": {}}))
    second.write_text(yaml.safe_dump({"canaryAnalysis": {"window": "15m", "latencyP99MaxRatio": None}}))
    (tmp_path / "none.yaml").write_text("image:\n  tag: x\n")
    thresholds = Thresholds.load([first, second, tmp_path / "none.yaml"], {"max_error_ratio_increase": 0.002,
                                                                            "min_results": None})
    assert (thresholds.min_requests, thresholds.window, thresholds.window_seconds) == (500, "15m", 900)
    assert thresholds.max_error_ratio_increase == 0.002
    assert thresholds.latency_p99_max_ratio == 1.5 and thresholds.min_results == 100  # defaults kept


@pytest.mark.parametrize(("content", "message"), [
    ({"canaryAnalysis": {"minRequest": 5}}, "minRequest"),
    ({"canaryAnalysis": {"window": "10 minutes"}}, "window"),
    ({"canaryAnalysis": {"maxErrorRatioIncrease": 2}}, "maxErrorRatioIncrease"),
    ({"canaryAnalysis": ["x"]}, "not a mapping"),
])
def test_bad_values_are_refused_with_the_key(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ThresholdsError, match=message):
        Thresholds.load([path])


def test_the_command_exits_undecided_when_prometheus_cannot_be_reached(tmp_path: Path) -> None:
    from devtools.procs import free_port

    result = subprocess.run(
        [sys.executable, "-m", "predictors", "canary-analysis", "--prometheus", f"http://127.0.0.1:{free_port()}",
         "--model", "m", "--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "cannot decide: Prometheus at http://127.0.0.1:" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_the_command_refuses_bad_thresholds_as_undecided(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "predictors", "canary-analysis", "--prometheus", "http://127.0.0.1:1", "--model", "m",
         "--window", "ten"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "window" in result.stderr
