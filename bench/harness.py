"""What every `python -m bench` suite shares: its command line, its children's environment, the record of a
run (opened, closed, published as JSON and a table), and the progress lines it prints."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devtools.procs import REPO_DIR


def child_env(threads: int, work_dir: Path) -> dict[str, str]:
    """The environment of every model-side child: the run's torch threads and its ModelScope cache."""
    return {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "MODELSCOPE_CACHE": str(work_dir / "modelscope-cache"),
        "PYTHONUNBUFFERED": "1",
    }


def run_child_json(command: list[str], env: dict[str, str], log: Path, timeout: float) -> dict[str, Any]:
    """Run a measuring child process to completion; its last ``BENCH_JSON {...}`` (or ``{...}``) line."""
    completed = subprocess.run(
        command, capture_output=True, env={**os.environ, **env}, timeout=timeout, cwd=str(REPO_DIR)
    )
    log.write_bytes(completed.stdout + b"\n--- stderr ---\n" + completed.stderr)
    if completed.returncode != 0:
        raise RuntimeError(
            f"{command[2]} failed ({completed.returncode}):\n{completed.stderr.decode()[-3000:]}"
        )
    for line in completed.stdout.decode().splitlines()[::-1]:
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON ") :])  # type: ignore[no-any-return]
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise RuntimeError(f"{command[2]} printed no JSON")


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def section_parser(section: str, description: str, quick: str, models: tuple[str, ...]) -> argparse.ArgumentParser:
    """`python -m bench SECTION`'s parser with the flags every section has: --quick (`quick`: its help),
    --smoke, --model (one of `models`)."""
    parser = argparse.ArgumentParser(prog=f"python -m bench {section}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--smoke", action="store_true", help="seconds-long run for the test suite")
    parser.add_argument("--model", choices=models, help="the model (default: the profile's)")
    return parser


def parse_section_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """A section's own flags (in `parser`) plus those of every section; `profile` from --quick / --smoke."""
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of the server")
    parser.add_argument("--work-dir", type=Path, default=REPO_DIR / "bench" / "results" / "work")
    parser.add_argument("--out-dir", type=Path, default=REPO_DIR / "bench" / "results")
    parser.add_argument("--start-timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    args.profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    return args


def chosen_profile(args: argparse.Namespace, profiles: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The settings of the run's profile (a copy); `args.model` defaults to the profile's model."""
    settings = dict(profiles[args.profile])
    args.model = args.model or settings["model"]
    return settings


def open_run(args: argparse.Namespace, section: str, argv: list[str] | None) -> tuple[str, dict[str, str],
                                                                                    float, dict[str, Any]]:
    """A `python -m bench SECTION` run begins: its time stamp, its log directory (set as `args.log_dir`),
    the children's environment, its start (monotonic) and the opening record of its results. From here on
    SIGTERM unwinds the run through its `finally`s (which stop its servers)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.work_dir = args.work_dir.resolve()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.log_dir = args.work_dir / "logs" / f"{section}-{stamp}"
    args.log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started_at": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([f"python -m bench {section}", *(argv if argv is not None else sys.argv[2:])]),
        "profile": args.profile, "model": args.model, "threads": args.threads,
        "load_average_at_start": list(os.getloadavg()),
        "code": code_version(),
    }
    return stamp, child_env(args.threads, args.work_dir), time.monotonic(), results


def code_version() -> dict[str, Any] | None:
    """The commit this run's code comes from, and whether the code (server, client, bench, devtools) differed from it;
    None outside a git checkout. A series of runs is judged over runs of one unmodified commit (`series.py`)."""
    def git(*command: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_DIR), *command], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--",
                      "predictors", "clients", "bench", "devtools")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "modified": bool(changed)}


def close_run(results: dict[str, Any], began: float, log_dir: Path, out: Path) -> None:
    """A run's closing record (wall time since `began`, load, whether the machine was busy, its logs)
    and its JSON file `out`."""
    results["wall_s"] = round(time.monotonic() - began, 1)
    results["load_average_at_end"] = list(os.getloadavg())
    # Other work on the machine skews everything (torch's OpenMP threads stall when descheduled).
    busiest = max(results["load_average_at_start"][0], results["load_average_at_end"][0])
    results["machine_busy"] = busiest > 0.5 * (os.cpu_count() or 1)
    results["logs"] = str(log_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


def publish(results: dict[str, Any], began: float, log_dir: Path, out: Path,
            render: Callable[[dict[str, Any]], str]) -> int:
    """`close_run`, then the run's table and where its JSON went on stdout; the exit code (0)."""
    close_run(results, began, log_dir, out)
    print(render(results))
    print(f"\nwall time {results['wall_s']} s")
    print(f"\nJSON: {out}")
    return 0
