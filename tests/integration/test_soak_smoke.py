"""Smoke run of the soak command (`python -m bench soak --minutes 0.2 --models tiny`): it serves, sends
mixed traffic, reads the server's resources twice and writes a complete report. Plumbing only: the growth
figures of a seconds-long run mean nothing, so the target is not asserted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: ~40 s on a quiet 2-core machine (start-up of the tiny models, 3 s warm-up, 12 s of traffic)
TIMEOUT_S = 240


def test_the_soak_command_reports_resources_and_answers(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "soak", "--minutes", "0.2", "--models", "tiny", "--warmup-seconds", "3",
         "--sample-seconds", "4", "--concurrency", "4", "--work-dir", str(tmp_path / "work"),
         "--out-dir", str(tmp_path / "results")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the soak command stops its server on SIGTERM
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"the soak smoke run took more than {TIMEOUT_S} s:\n{stdout[-3000:]}{stderr[-3000:]}")
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
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
    assert "RSS MiB" in stdout
