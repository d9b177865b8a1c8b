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
    assert "3 kept, 0 broken" in result.stdout


def lint_imports_with(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """`lint_imports` on a copy of the package where `module` (a path under predictors/) ends with `line`."""
    shutil.copytree(REPO / "predictors", tmp_path / "predictors", ignore=shutil.ignore_patterns("__pycache__"))
    source = tmp_path / "predictors" / module
    source.write_text(source.read_text() + f"\n{line}  # noqa: E402 - the import under test\n")
    return lint_imports(tmp_path)


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    result = lint_imports_with(tmp_path, "runtime.py", "import predictors.server.app")
    assert result.returncode != 0
    assert "predictors.runtime -> predictors.server.app" in result.stdout, result.stdout


def test_importing_the_development_tooling_breaks_the_contract(tmp_path: Path) -> None:
    result = lint_imports_with(tmp_path, "errors.py", "import devtools.procs")
    assert result.returncode != 0
    assert "predictors is not allowed to import devtools" in result.stdout, result.stdout
    assert "predictors.errors -> devtools" in result.stdout, result.stdout
