"""The package's layers (pyproject.toml's import-linter contracts) hold, and the contracts have teeth: the same
check on a copy of the package where a lower layer imports a higher one fails, naming the import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the `predictors` package found under `root`, with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_layers_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(REPO / "predictors", tmp_path / "predictors", ignore=shutil.ignore_patterns("__pycache__"))
    runtime = tmp_path / "predictors" / "runtime.py"
    runtime.write_text(runtime.read_text() + "\nimport predictors.server.app  # noqa: E402 - the upward import\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "predictors.runtime -> predictors.server.app" in result.stdout, result.stdout
