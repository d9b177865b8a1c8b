"""values.schema.json and the chart README's values table are what their generators make of values.yaml now
(devtools/chart.py: helm-values-schema-json and helm-docs, pinned in ci/install-chart-tools.sh)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devtools import chart

from .conftest import CHART


def test_committed_files_are_what_values_yaml_generates() -> None:
    diff = chart.differences(chart.generate())
    assert not diff, f"run: make chart-docs\n{diff[:20000]}"


def test_the_check_fails_on_a_stale_file_and_regenerating_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "vision-predictors"
    shutil.copytree(CHART, copy)
    values = copy / "values.yaml"
    old = "# -- REST (and /metrics) port; first container port, the one KServe routes to."
    assert old in values.read_text()
    values.write_text(values.read_text().replace(old, "# -- A description only this copy has."))
    assert chart.main(["--check", "--chart", str(copy)]) == 1
    report = capsys.readouterr().err
    for name in ("values.schema.json", "README.md"):
        assert f"+++ {name} (generated)" in report
    assert report.count("A description only this copy has.") == 2  # the schema's description and the table's row
    assert chart.main(["--chart", str(copy)]) == 0
    assert "A description only this copy has." in (copy / "README.md").read_text()
    assert chart.main(["--check", "--chart", str(copy)]) == 0
