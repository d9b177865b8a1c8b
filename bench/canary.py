"""`python -m bench canary`: how fast and how right `predictors canary-analysis` decides, with real parts.

    .venv/bin/python -m bench canary                  # 5 rounds of every scenario
    .venv/bin/python -m bench canary --rounds 10 --rate 4 --seconds 60

The scenarios of tests/support/canary.py (a healthy canary, one failing a fifth of its items, one 1 s slower per
forward pass, one with other weights, one with a tenth of the traffic) run together on a stable and a canary
server scraped every second by Debian's Prometheus. Each round sends `--rate` requests per second per model and
track (the quiet canary a tenth) for `--seconds`, and asks the analysis every `--poll` seconds about the traffic
since the round began (the window grows with it), as the pipeline's gate asks until its deadline (here the
round's end). A scenario's first decided verdict (promote or roll back) is the one the pipeline would act on:

- decision time: seconds from the round's first request to that verdict;
- a false decision: that verdict is not the scenario's (for the quiet canary, any verdict before the end);
- undecided: no verdict by the round's end (right only for the quiet canary).

Results: bench/results/canary-<time>.json, and a table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import code_version, say
from devtools.procs import REPO_DIR
from tests.support.canary import (
    CANARY_ANALYSIS_VALUES,
    SCENARIOS,
    CanaryWorld,
    analysis_command,
    canary_world,
    send_load,
)


def analyse_in_process(world: CanaryWorld, model: str, window_seconds: int, at: float, json_path: Path) -> int:
    """`predictors canary-analysis` in this process (the same command line; a child process would cost a second
    of start-up per question on a loaded machine); its exit code."""
    from predictors.cli import main

    argv = analysis_command(world.prometheus.url, model, world.values_file, "--window", f"{window_seconds}s",
                            "--at", f"{at:.3f}", "--json", str(json_path))[3:]
    with contextlib.redirect_stdout(io.StringIO()):
        return main(argv)


def run_round(world: CanaryWorld, index: int, rate: float, seconds: float, poll: float) -> dict[str, Any]:
    started = time.time()
    load = threading.Thread(target=send_load, args=(world, rate, seconds, index), daemon=True)
    load.start()
    decided: dict[str, dict[str, Any]] = {}
    asked = 0
    analysis_seconds: list[float] = []
    while time.time() < started + seconds:
        time.sleep(max(0.0, poll - (time.time() - started) % poll))
        now = time.time()
        for scenario in SCENARIOS:
            if scenario.model in decided:
                continue
            window = math.ceil(now - started) + 1
            began = time.perf_counter()
            code = analyse_in_process(world, scenario.model, window, now,
                                      world.directory / "reports" / f"round{index}-{scenario.model}.json")
            analysis_seconds.append(time.perf_counter() - began)
            asked += 1
            if code in (0, 1):
                decided[scenario.model] = {"verdict": "promote" if code == 0 else "rollback",
                                           "seconds": round(now - started, 1)}
    load.join()
    outcome = {}
    for scenario in SCENARIOS:
        verdict = decided.get(scenario.model, {"verdict": "undecided", "seconds": None})
        outcome[scenario.model] = {**verdict, "expected": scenario.expected,
                                   "false": verdict["verdict"] != scenario.expected}
    say(f"round {index}: " + ", ".join(f"{m} {o['verdict']} ({o['seconds']} s)" for m, o in outcome.items()))
    time.sleep(3)  # the next round's window starts after this one's last requests
    return {"scenarios": outcome, "questions": asked,
            "analysis_seconds_median": round(statistics.median(analysis_seconds), 3) if analysis_seconds else None}


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    per_scenario = {}
    for scenario in SCENARIOS:
        outcomes = [r["scenarios"][scenario.model] for r in rounds]
        times = [o["seconds"] for o in outcomes if o["seconds"] is not None and not o["false"]]
        per_scenario[scenario.model] = {
            "expected": scenario.expected, "what": scenario.what, "runs": len(outcomes),
            "false_decisions": sum(o["false"] for o in outcomes),
            "verdicts": [o["verdict"] for o in outcomes],
            "decision_seconds_median": statistics.median(times) if times else None,
            "decision_seconds_max": max(times) if times else None,
        }
    runs = sum(s["runs"] for s in per_scenario.values())
    false = sum(s["false_decisions"] for s in per_scenario.values())
    return {"scenarios": per_scenario, "runs": runs, "false_decisions": false,
            "false_decision_rate": round(false / runs, 4) if runs else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench canary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=4.0, help="requests per second per model and track")
    parser.add_argument("--seconds", type=float, default=60.0, help="each round's load (and the gate's deadline)")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between the analysis' questions")
    parser.add_argument("--work-dir", type=Path, default=REPO_DIR / "bench" / "results" / "work")
    parser.add_argument("--out-dir", type=Path, default=REPO_DIR / "bench" / "results")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per load request otherwise
    from predictors.models.demo import make_demo_repository

    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = (args.work_dir / f"canary-{stamp}").resolve()
    demo = make_demo_repository(work / "demo", ["image-classification"])[0]
    results: dict[str, Any] = {"command": " ".join(["python -m bench canary", *(argv or sys.argv[2:])]),
                               "code": code_version(), "rate": args.rate, "seconds": args.seconds,
                               "poll": args.poll, "thresholds": CANARY_ANALYSIS_VALUES["canaryAnalysis"]}
    with canary_world(demo, work / "world", with_redis=False) as world:
        (world.directory / "reports").mkdir(exist_ok=True)
        rounds = [run_round(world, index, args.rate, args.seconds, args.poll) for index in range(args.rounds)]
    results["rounds"] = rounds
    results["summary"] = summary = summarise(rounds)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"canary-{stamp}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'scenario':<22}{'expected':<11}{'runs':>5}{'false':>7}  decision s (median / max)  verdicts")
    for model, s in summary["scenarios"].items():
        times = "-" if s["decision_seconds_median"] is None else \
            f"{s['decision_seconds_median']:.1f} / {s['decision_seconds_max']:.1f}"
        print(f"{model:<22}{s['expected']:<11}{s['runs']:>5}{s['false_decisions']:>7}  {times:<26} "
              f"{' '.join(s['verdicts'])}")
    print(f"false decisions: {summary['false_decisions']} of {summary['runs']} ({summary['false_decision_rate']})")
    print(f"results: {out}")
    return 0
