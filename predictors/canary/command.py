"""`predictors canary-analysis`: compare each model's canary with its stable track in Prometheus and decide.

Exit codes: 0 promote, 1 roll back, 2 undecided (too little traffic, a signal missing, Prometheus unreachable,
or a usage error). Imports neither KServe nor torch: the command runs anywhere httpx, pydantic and scipy do.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from predictors.canary.thresholds import Thresholds, ThresholdsError

#: exit code when the analysis cannot decide (as for the verdict "undecided")
UNDECIDED = 2

DESCRIPTION = (
    "Compare the canary with the stable track of each model over a window in Prometheus: traffic first, then "
    "error ratio, 503 share, p99 latency and the answers (score/quality/faces histograms, chi-squared test; "
    "needs_review share). Thresholds: defaults, then the canaryAnalysis block of each --values file, then flags. "
    "Exit codes: 0 promote, 1 roll back, 2 undecided (too little traffic, a missing signal, Prometheus "
    "unreachable, a usage error)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus' base URL")
    parser.add_argument("--model", dest="models", action="append", required=True, metavar="NAME",
                        help="model name in the API (the series' model label); repeatable")
    parser.add_argument("--selector", default="", metavar="MATCHERS",
                        help='extra label matchers for both tracks, e.g. namespace="vision-production"')
    parser.add_argument("--stable-selector", metavar="MATCHER",
                        help='the stable track\'s matcher (default vision_predictors_io_track="stable"; Knative: '
                             'serving_knative_dev_revision="<latestRolledoutRevision>")')
    parser.add_argument("--canary-selector", metavar="MATCHER",
                        help='the canary track\'s matcher (default vision_predictors_io_track="canary")')
    parser.add_argument("--values", dest="values_files", action="append", type=Path, default=[], metavar="FILE",
                        help="a chart values file whose canaryAnalysis block sets thresholds (repeatable, later wins)")
    for name, flag in Thresholds.flag_names().items():
        info = Thresholds.model_fields[name]
        kind = str if info.annotation is str else int if info.annotation is int else float
        metavar = "DURATION" if name == "window" else kind.__name__.upper()
        parser.add_argument(flag, dest=f"threshold_{name}", type=kind, metavar=metavar,
                            help=f"{info.description} (default {info.default})")
    parser.add_argument("--at", help="evaluate at this instant (unix seconds or ISO 8601; default now)")
    parser.add_argument("--json", dest="json_path", type=Path, metavar="PATH", help="write the report as JSON")
    parser.add_argument("--markdown", dest="markdown_path", type=Path, metavar="PATH",
                        help="write the report as Markdown")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per Prometheus query (30)")


def _instant(text: str | None) -> float:
    if text is None:
        return time.time()
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main(args: argparse.Namespace) -> int:
    # here, not at import: building the CLI's parser must not pull in scipy, grpc or httpx
    from predictors.canary.analysis import TrackSelector, analyse, measure, overall
    from predictors.canary.prometheus import Prometheus, PrometheusError
    from predictors.canary.report import Report

    # the report says what was asked; httpx's line per query would bury it
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.perf_counter()
    overrides: dict[str, Any] = {name: getattr(args, f"threshold_{name}") for name in Thresholds.model_fields}
    try:
        thresholds = Thresholds.load(args.values_files, overrides)
        at = _instant(args.at)
    except (ThresholdsError, ValueError) as error:
        print(f"predictors canary-analysis: {error}", file=sys.stderr)
        return UNDECIDED
    prometheus = Prometheus(args.prometheus, timeout=args.timeout, at=at)
    analyses = []
    try:
        for model in args.models:
            stable = TrackSelector.of(model, "stable", args.stable_selector, args.selector)
            canary = TrackSelector.of(model, "canary", args.canary_selector, args.selector)
            analyses.append(analyse(model, measure(prometheus, stable.matchers, thresholds.window),
                                    measure(prometheus, canary.matchers, thresholds.window), thresholds))
    except PrometheusError as error:
        print(f"predictors canary-analysis: cannot decide: {error}", file=sys.stderr)
        return UNDECIDED
    finally:
        prometheus.close()
    report = Report(overall(analyses), analyses, thresholds, args.prometheus, at, time.perf_counter() - started)
    sys.stdout.write(report.text())
    for path, content in ((args.json_path, report.json), (args.markdown_path, report.markdown)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content(), encoding="utf-8")
    return report.exit_code
