"""A series of `python -m bench jobs` runs of one commit, judged together.

    .venv/bin/python -m bench series                 # the full-profile runs of the newest run's commit
    .venv/bin/python -m bench series --commit e4bccfd
    .venv/bin/python -m bench series bench/results/jobs-20261130-*.json   # these runs, whatever their code

Why: each run of `bench jobs` judges itself, but on a shared 2-core machine one run's throughput ratio
scatters by a standard deviation of 0.016-0.018 between runs (the forward pass alone drifts by +-5 % from one
10 s window to the next; docs/performance.md), as much as the margin the 0.95 target leaves. One run's
verdict then says more about that run's luck than about the server. A series estimates each quantity
from every run and says how sure the estimate is.

How a series judges, per target (with n runs, their mean m and standard deviation s; t is Student's
one-sided 95 % quantile with n - 1 degrees of freedom):

- throughput ratios (burst, steady; a run's value is the mean of its rounds): **met** when the lower 95 %
  confidence bound of the mean, m - t s / sqrt(n), is at least the target; **missed** when m itself is below
  it; otherwise **not shown** (more runs would tell).
- submit p99 (busy, idle; a run's value is its own p99): met when the upper bound m + t s / sqrt(n) is at most
  the target; missed when m is above it; otherwise not shown.
- exactly once: met only when it was met in every run (it is not a noisy measurement: a lost or doubled job
  in any run is a bug).

A target with a run lacking its value is missed. Fewer than `MIN_RUNS` runs judge nothing ("too few runs").
Every run counts: none is left out for its numbers, and each run's own verdicts are listed next to the
series'. The result goes to ``bench/results/series-jobs-<time>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from scipy.stats import t as student_t

from bench.jobs import SUBMIT_P99_TARGET_MS, THROUGHPUT_TARGET
from bench.report import _f, _table
from devtools.procs import REPO_DIR

MIN_RUNS = 5
CONFIDENCE = 0.95
Rule = Literal["at_least", "at_most", "every_run"]
#: the targets of `bench jobs`, in its `targets` record: name -> (rule, goal)
TARGETS: dict[str, tuple[Rule, float]] = {
    "throughput_burst": ("at_least", THROUGHPUT_TARGET),
    "throughput_steady": ("at_least", THROUGHPUT_TARGET),
    "submit_p99_busy": ("at_most", SUBMIT_P99_TARGET_MS),
    "submit_p99_idle": ("at_most", SUBMIT_P99_TARGET_MS),
    "exactly_once": ("every_run", 1.0),
}


@dataclass
class Judged:
    """One target over the series."""

    target: str
    rule: Rule
    goal: float
    runs: int
    runs_met: int
    mean: float | None = None
    sd: float | None = None
    bound: float | None = None  # the one-sided 95 % confidence bound of the mean (lower or upper by rule)
    verdict: str = "missed"


def judge_target(name: str, rule: Rule, goal: float, values: list[float | None], met: list[bool]) -> Judged:
    """The series' verdict on one target from each run's value and each run's own verdict."""
    judged = Judged(name, rule, goal, runs=len(values), runs_met=sum(met))
    if rule == "every_run":
        judged.verdict = "met" if values and all(met) else "missed"
        return judged
    known = [value for value in values if value is not None]
    if len(known) != len(values):
        return judged  # a run that could not measure it: nothing can be said for the series
    if len(known) < MIN_RUNS:
        judged.verdict = "too few runs"
        return judged
    judged.mean, judged.sd = statistics.fmean(known), statistics.stdev(known)
    margin = float(student_t.ppf(CONFIDENCE, len(known) - 1)) * judged.sd / math.sqrt(len(known))
    if rule == "at_least":
        judged.bound = judged.mean - margin
        shown, refuted = judged.bound >= goal, judged.mean < goal
    else:
        judged.bound = judged.mean + margin
        shown, refuted = judged.bound <= goal, judged.mean > goal
    judged.verdict = "met" if shown else "missed" if refuted else "not shown"
    return judged


def judge_series(runs: list[dict[str, Any]]) -> list[Judged]:
    out = []
    for name, (rule, goal) in TARGETS.items():
        records = [run["targets"].get(name) for run in runs]
        values = [None if record is None else record["value"] for record in records]
        met = [record is not None and bool(record["met"]) for record in records]
        out.append(judge_target(name, rule, goal, values, met))
    return out


# ---- choosing the runs -------------------------------------------------------------------------------


def load(paths: list[Path]) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(paths):
        run = json.loads(path.read_text())
        if "targets" not in run:
            raise SystemExit(f"{path}: not the record of a `python -m bench jobs` run (no targets)")
        run["file"] = str(path)
        runs.append(run)
    return runs


def select(runs: list[dict[str, Any]], commit: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The full-profile runs of one unmodified commit: `commit` (a prefix) or the newest run's."""
    candidates = [run for run in runs if run.get("profile") == "full" and run.get("code")
                  and not run["code"]["modified"]]
    if commit is None:
        if not candidates:
            raise SystemExit("no full-profile run of an unmodified commit among the results: run "
                             "`python -m bench jobs` on a clean checkout first")
        commit = max(candidates, key=lambda run: run["started_at"])["code"]["commit"]
    chosen = [run for run in candidates if run["code"]["commit"].startswith(commit)]
    commits = {run["code"]["commit"] for run in chosen}
    if len(commits) > 1:
        raise SystemExit(f"commit {commit} is ambiguous: {sorted(commits)}")
    if not chosen:
        raise SystemExit(f"no full-profile run of commit {commit} (unmodified) among the results")
    return chosen[0]["code"]["commit"], chosen


# ---- the report --------------------------------------------------------------------------------------


def render(series: dict[str, Any]) -> str:
    names = list(TARGETS)
    run_rows = [[run["started_at"], *(_value(run["targets"].get(name)) for name in names)]
                for run in series["runs"]]
    judged_rows = [[j["target"], _goal(j["rule"], j["goal"]), f"{j['runs_met']}/{j['runs']}", _f(j["mean"], 3),
                    _f(j["sd"], 3), _f(j["bound"], 3), j["verdict"]] for j in series["judged"]]
    return "\n".join([
        f"jobs benchmark series  commit={series['commit']}  runs={len(series['runs'])}  "
        f"(each run's value; * = that run missed it)",
        _table(["run", *names], run_rows),
        "",
        f"series: {CONFIDENCE:.0%} one-sided confidence bound of the runs' mean against the goal (bench/series.py)",
        _table(["target", "goal", "runs met", "mean", "sd", "bound", "verdict"], judged_rows),
    ])


def _value(record: dict[str, Any] | None) -> str:
    if record is None:
        return "-"
    return f"{_f(record['value'], 3)}{'' if record['met'] else '*'}"


def _goal(rule: Rule, goal: float) -> str:
    return {"at_least": f">= {goal:g}", "at_most": f"<= {goal:g}", "every_run": "every run"}[rule]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench series", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path,
                        help="runs' JSON records to judge as they are (default: chosen from --results-dir)")
    parser.add_argument("--commit", help="the runs of this commit (a prefix; default: the newest run's)")
    parser.add_argument("--results-dir", type=Path, default=REPO_DIR / "bench" / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.files:
        runs = load(args.files)
        commits = {(run.get("code") or {}).get("commit", "unknown") for run in runs}
        commit = commits.pop() if len(commits) == 1 else "several"
    else:
        commit, runs = select(load(list(args.results_dir.glob("jobs-*.json"))), args.commit)
    series = {"judged_at": dt.datetime.now().isoformat(timespec="seconds"), "commit": commit,
              "confidence": CONFIDENCE,
              "runs": [{"file": run["file"], "started_at": run["started_at"], "targets": run["targets"]}
                       for run in runs],
              "judged": [asdict(judged) for judged in judge_series(runs)]}
    out = args.results_dir / f"series-jobs-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(series, indent=2) + "\n")
    print(render(series))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
