"""The chart's generated reference files, so that they cannot drift from values.yaml:

- ``values.schema.json``: helm-values-schema-json, from the ``# @schema`` annotations of values.yaml and the
  definitions they point to in ``schema/`` (its settings: ``.schema.yaml``);
- ``README.md``: helm-docs, ``README.md.gotmpl`` with the values table from values.yaml's helm-docs comments.

Both are Go programs, pinned and built once by ci/install-chart-tools.sh. ``python -m devtools.chart``
rewrites the files; ``--check`` exits 1 with a diff if that would change anything
(tests/chart/test_generated_docs.py runs the check).
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "vision-predictors"
INSTALL = REPO / "ci" / "install-chart-tools.sh"


def tools() -> dict[str, str]:
    """HELM_SCHEMA and HELM_DOCS: paths of the generators (built on first use, a minute or two)."""
    out = subprocess.run(["bash", str(INSTALL)], check=True, capture_output=True, text=True, timeout=1200).stdout
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if not {"HELM_SCHEMA", "HELM_DOCS"} <= found.keys():
        raise RuntimeError(f"{INSTALL.name} printed no HELM_SCHEMA / HELM_DOCS:\n{out}")
    return found


def _stdout(command: list[str], chart: Path) -> str:
    proc = subprocess.run(command, cwd=chart, capture_output=True, text=True, timeout=300)
    # helm-docs reports a broken template or values file as a warning and exits 0 with nothing written.
    failed = proc.returncode != 0 or any(f"level={level}" in proc.stderr for level in ("warning", "error", "fatal"))
    if failed or not proc.stdout:
        raise RuntimeError(f"{Path(command[0]).name} failed in {chart} (exit {proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def generate(chart: Path = CHART) -> dict[str, str]:
    """File name in the chart -> its generated text (nothing is written)."""
    found = tools()
    schema = _stdout([found["HELM_SCHEMA"], "--output", "-"], chart)
    readme = _stdout(
        [found["HELM_DOCS"], "--chart-search-root", ".", "--template-files", "README.md.gotmpl",
         "--sort-values-order", "file", "--dry-run"],
        chart,
    )
    return {"values.schema.json": schema, "README.md": readme}


def differences(generated: dict[str, str], chart: Path = CHART) -> str:
    """A unified diff of the committed files against `generated`; "" when they are the same."""
    diff: list[str] = []
    for name, text in generated.items():
        path = chart / name
        committed = path.read_text() if path.exists() else ""
        diff += difflib.unified_diff(
            committed.splitlines(keepends=True), text.splitlines(keepends=True),
            f"{name} (committed)", f"{name} (generated)",
        )
    return "".join(diff)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 (and print the diff) if a file would change")
    parser.add_argument("--chart", type=Path, default=CHART, help="chart directory (default: %(default)s)")
    args = parser.parse_args(argv)
    generated = generate(args.chart)
    diff = differences(generated, args.chart)
    if args.check:
        if diff:
            print(f"{diff}\nout of date (run: make chart-docs)", file=sys.stderr)
            return 1
        return 0
    for name, text in generated.items():
        (args.chart / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
