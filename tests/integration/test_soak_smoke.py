"""Smoke run of the soak command (`python -m bench soak --minutes 0.2 --models tiny`): it serves, sends
mixed traffic, reads the server's resources twice and writes a complete report. Plumbing only: the growth
figures of a seconds-long run mean nothing, so the target is not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_soak_command_reports_resources_and_answers(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "soak", "--minutes", "0.2", "--models", "tiny", "--warmup-seconds", "3",
         "--sample-seconds", "4", "--concurrency", "4", "--work-dir", str(tmp_path / "work"),
         "--out-dir", str(tmp_path / "results")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (path,) = (tmp_path / "results").glob("soak-*.json")
    report = json.loads(path.read_text())
    assert report["server_alive"] and report["ready_at_end"] and report["idle_at_end"]
    assert report["server_exit_code"] == 0 and report["tracebacks_in_log"] == 0
    assert report["unexpected"] == [] and report["server_errors_5xx"] == 0
    for reading in (report["start"], report["end"]):
        assert reading["rss_mib"] > 50 and reading["open_fds"] > 3 and reading["threads"] > 1
    assert set(report["growth_percent"]) == {"rss_mib", "open_fds", "threads"}
    assert len(report["timeline"]) >= 3
    statuses = {row["status"] for row in report["answers"]}
    assert {200, 400, 404, 413} <= statuses  # valid and invalid traffic both ran
    assert report["requests_total_by_code"].get("INTERNAL_ERROR", 0) == 0
    assert "RSS MiB" in result.stdout
