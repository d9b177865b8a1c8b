"""The analysis as a person reads it (terminal text, Markdown for a merge request or job page) and as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from predictors.canary.analysis import EXIT_CODES, ModelAnalysis, Verdict, queries
from predictors.canary.thresholds import Thresholds

_HEADLINE = {"promote": "PROMOTE", "rollback": "ROLL BACK", "undecided": "UNDECIDED"}
_MARK = {"pass": "ok", "fail": "FAIL", "undecided": "wait", "skip": "n/a"}


@dataclass
class Report:
    verdict: Verdict
    analyses: Sequence[ModelAnalysis]
    thresholds: Thresholds
    prometheus: str
    at: float
    #: seconds the queries and the decision took
    elapsed_seconds: float

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "at": _iso(self.at),
            "prometheus": self.prometheus,
            "window": self.thresholds.window,
            "thresholds": self.thresholds.model_dump(by_alias=True),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "models": [analysis.as_dict() for analysis in self.analyses],
        }

    def json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def text(self) -> str:
        lines = [f"canary analysis at {_iso(self.at)} over {self.thresholds.window} ({self.prometheus})"]
        for analysis in self.analyses:
            lines += ["", f"model {analysis.model}: {_HEADLINE[analysis.verdict]}",
                      f"  {'check':<20} {'stable':>16} {'canary':>16}  result"]
            for check in analysis.checks:
                lines.append(f"  {check.name:<20} {check.stable:>16} {check.canary:>16}  {_MARK[check.outcome]:<4}"
                             + (f"  {check.detail}" if check.detail else ""))
        lines += ["", f"verdict: {_HEADLINE[self.verdict]} (exit {self.exit_code})"]
        lines += [f"  - {analysis.model}: {reason}" for analysis in self.analyses for reason in analysis.reasons]
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        lines = [f"## Canary analysis: {_HEADLINE[self.verdict]}", "",
                 f"At {_iso(self.at)}, window `{self.thresholds.window}`, Prometheus `{self.prometheus}`; "
                 f"exit code {self.exit_code}."]
        for analysis in self.analyses:
            lines += ["", f"### `{analysis.model}`: {_HEADLINE[analysis.verdict]}", "",
                      "| check | stable | canary | threshold | result | detail |", "|---|---|---|---|---|---|"]
            for check in analysis.checks:
                cells = [check.name, check.stable, check.canary, check.threshold, _MARK[check.outcome], check.detail]
                lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
            lines += ["", "<details><summary>Queries</summary>", ""]
            for track, figures in (("stable", analysis.stable), ("canary", analysis.canary)):
                for name, promql in queries(figures.selector, self.thresholds.window).items():
                    lines.append(f"- {track} {name}: `{promql}`")
            lines += ["", "</details>"]
        return "\n".join(lines) + "\n"


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="seconds")
