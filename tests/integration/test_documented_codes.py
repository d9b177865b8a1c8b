"""Every error code the suite provoked is in docs/errors.md's table (runs after every other test of the tier).

The codes are read from the access logs of every server this pytest session started (each writes its log under
the session's temporary directory): whatever clients received or caused, over REST and gRPC.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ERRORS_DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def documented_codes() -> set[str]:
    """The codes of the error table in docs/errors.md (rows `| <status> | `CODE` | ...`)."""
    return set(re.findall(r"^\| \d{3} \| `([A-Z_]+)` \|", ERRORS_DOC.read_text(encoding="utf-8"), re.M))


def codes_in_access_logs(root: Path) -> dict[str, Path]:
    """Every `code` of an access-log line below `root`, with one log it appeared in."""
    seen: dict[str, Path] = {}
    for log in root.rglob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if not line.startswith("{") or '"code"' not in line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("logger") == "predictors.access" and isinstance(entry.get("code"), str):
                seen.setdefault(entry["code"], log)
    return seen


def test_the_error_table_is_parsed() -> None:
    assert {"INVALID_INPUT", "INTERNAL_ERROR", "CLIENT_CLOSED", "NOT_FOUND"} <= documented_codes()


@pytest.mark.after_all
def test_every_code_the_suite_saw_is_documented(tmp_path_factory: pytest.TempPathFactory) -> None:
    seen = codes_in_access_logs(tmp_path_factory.getbasetemp())
    assert seen, "no server access log found under the session's temporary directory"
    undocumented = {code: str(log) for code, log in seen.items() if code != "OK" and code not in documented_codes()}
    assert not undocumented, f"codes answered but not in docs/errors.md's table: {undocumented}"
