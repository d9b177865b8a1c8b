"""`python -m bench series`: a series of jobs-benchmark runs judged together (bench/series.py)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import series
from bench.harness import code_version
from devtools.procs import REPO_DIR


def judged(values: list[float | None], rule: series.Rule = "at_least", goal: float = 0.95) -> series.Judged:
    met = [value is not None and (value >= goal if rule == "at_least" else value <= goal) for value in values]
    return series.judge_target("t", rule, goal, values, met)


def test_a_mean_whose_lower_bound_clears_the_goal_is_met() -> None:
    values = [0.97, 0.99, 0.98, 0.96, 1.0, 0.98]
    result = judged(values)
    mean, sd = sum(values) / 6, 0.0141421356  # deviations -0.01, 0.01, 0, -0.02, 0.02, 0 -> variance 0.001 / 5
    assert result.mean == pytest.approx(mean)
    assert result.sd == pytest.approx(sd, rel=1e-6)
    # Student's t, 5 degrees of freedom, one-sided 95 %: 2.015
    assert result.bound == pytest.approx(mean - 2.015 * sd / math.sqrt(6), abs=1e-4)
    assert result.verdict == "met" and result.runs_met == 6


def test_runs_that_miss_do_not_sink_a_series_whose_mean_is_shown_above_the_goal() -> None:
    result = judged([0.935, 0.99, 0.98, 0.985, 0.975, 0.99, 0.98, 0.947, 0.985, 0.99])
    assert result.runs_met == 8 and result.verdict == "met"


def test_a_mean_below_the_goal_is_missed_and_one_too_close_to_tell_is_not_shown() -> None:
    assert judged([0.94, 0.96, 0.93, 0.95, 0.945]).verdict == "missed"
    close = judged([0.93, 0.98, 0.94, 0.97, 0.96])  # mean 0.956, but the scatter allows below 0.95
    assert close.mean is not None and close.mean > 0.95 and close.bound is not None and close.bound < 0.95
    assert close.verdict == "not shown"


def test_an_upper_limit_is_judged_on_the_upper_bound() -> None:
    assert judged([15.0, 17.0, 16.0, 18.0, 21.0], "at_most", 20.0).verdict == "met"  # bound 19.6
    assert judged([19.0, 21.0, 18.0, 22.0, 19.5], "at_most", 20.0).verdict == "not shown"  # mean 19.9
    assert judged([21.0, 22.0, 20.5, 23.0, 21.5], "at_most", 20.0).verdict == "missed"


def test_too_few_runs_or_a_run_without_a_value_judge_nothing() -> None:
    assert judged([0.99, 0.99, 0.99, 0.99]).verdict == "too few runs"
    missing = judged([0.99, 0.99, None, 0.99, 0.99, 0.99])
    assert missing.verdict == "missed" and missing.mean is None


def test_exactly_once_must_hold_in_every_run() -> None:
    assert series.judge_target("exactly_once", "every_run", 1, [100.0] * 6, [True] * 6).verdict == "met"
    assert series.judge_target("exactly_once", "every_run", 1, [100.0] * 6, [True] * 5 + [False]).verdict == "missed"
    # one run is enough to find a lost job
    assert series.judge_target("exactly_once", "every_run", 1, [100.0], [True]).verdict == "met"


# ---- runs on disk ------------------------------------------------------------------------------------


def run_record(started_at: str, commit: str | None, *, steady: float = 0.98, modified: bool = False,
               profile: str = "full", once: bool = True) -> dict[str, Any]:
    def target(value: float, met: bool) -> dict[str, Any]:
        return {"goal": "", "value": value, "detail": "", "met": met}

    return {
        "started_at": started_at, "profile": profile,
        "code": None if commit is None else {"commit": commit, "modified": modified},
        "targets": {"throughput_burst": target(0.98, True), "throughput_steady": target(steady, steady >= 0.95),
                    "submit_p99_busy": target(17.0, True), "submit_p99_idle": target(5.0, True),
                    "exactly_once": target(1200, once)},
    }


def write_runs(directory: Path, records: list[dict[str, Any]]) -> None:
    for index, record in enumerate(records):
        (directory / f"jobs-20261130-{index:06d}.json").write_text(json.dumps(record))


def test_the_newest_runs_commit_is_chosen_and_modified_or_quick_runs_are_left_out(tmp_path: Path) -> None:
    old = [run_record(f"2026-11-30T01:0{i}:00", "a" * 40) for i in range(5)]
    new = [run_record(f"2026-11-30T02:0{i}:00", "b" * 40, steady=0.97 + i / 100) for i in range(6)]
    others = [run_record("2026-11-30T03:00:00", "b" * 40, modified=True),
              run_record("2026-11-30T03:01:00", "b" * 40, profile="quick"),
              run_record("2026-11-30T00:00:00", None)]
    write_runs(tmp_path, old + new + others)
    commit, runs = series.select(series.load(list(tmp_path.glob("jobs-*.json"))), None)
    assert commit == "b" * 40 and len(runs) == 6
    commit, runs = series.select(series.load(list(tmp_path.glob("jobs-*.json"))), "aaaa")
    assert commit == "a" * 40 and len(runs) == 5
    with pytest.raises(SystemExit, match="no full-profile run of commit c"):
        series.select(series.load(list(tmp_path.glob("jobs-*.json"))), "c")


def test_the_command_prints_every_run_and_the_series_verdicts_and_writes_them(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture[str]
                                                                              ) -> None:
    records = [run_record(f"2026-11-30T02:0{i}:00", "b" * 40, steady=steady, once=i != 3)
               for i, steady in enumerate([0.99, 0.90, 0.98, 0.99, 0.985, 0.99])]
    write_runs(tmp_path, records)
    assert series.main(["--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "0.900*" in out  # the run that missed it is marked
    written = json.loads(next(tmp_path.glob("series-jobs-*.json")).read_text())
    verdicts = {j["target"]: (j["verdict"], j["runs_met"]) for j in written["judged"]}
    assert verdicts["throughput_steady"] == ("not shown", 5)  # mean 0.973, but 0.90 widens the bound to 0.943
    assert verdicts["throughput_burst"] == ("met", 6)
    assert verdicts["exactly_once"] == ("missed", 5)
    assert written["commit"] == "b" * 40 and len(written["runs"]) == 6


def test_a_file_that_is_not_a_jobs_run_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latency-1.json"
    path.write_text(json.dumps({"started_at": "x"}))
    with pytest.raises(SystemExit, match="not the record of a `python -m bench jobs` run"):
        series.main([str(path), "--results-dir", str(tmp_path)])


def test_each_run_records_the_commit_of_its_code() -> None:
    head = subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"], capture_output=True, text=True)
    recorded = code_version()
    if head.returncode != 0:  # not a git checkout (an unpacked archive): nothing to record
        assert recorded is None
    else:
        assert recorded is not None and recorded["commit"] == head.stdout.strip()
        assert isinstance(recorded["modified"], bool)
