"""The generated reference pages (devtools/docs.py) are what the code says now."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools import docs


@pytest.mark.parametrize("page", sorted(docs.PAGES), ids=lambda path: path.name)
def test_generated_part_is_up_to_date(page: Path) -> None:
    assert docs.regenerated(page, docs.PAGES[page]) == page.read_text(), "run: python -m devtools.docs"


def test_the_check_fails_on_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "configuration.md"
    page.write_text(f"# x\n{docs.BEGIN}\n| a stale row |\n{docs.END}\n")
    monkeypatch.setattr(docs, "PAGES", {page: docs.settings_table}, raising=True)
    monkeypatch.setattr(docs, "REPO", tmp_path, raising=True)
    assert docs.main(["--check"]) == 1 and "a stale row" in page.read_text()
    assert docs.main([]) == 0 and "PREDICTORS_HTTP_PORT" in page.read_text()
    assert docs.main(["--check"]) == 0
