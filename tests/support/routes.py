"""The documented list of every route and RPC the server answers (docs/protocol.md, "Routes and RPCs")."""

from __future__ import annotations

import re
from pathlib import Path

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _section() -> str:
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    start = text.index("## Routes and RPCs\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def documented_routes() -> set[tuple[str, str]]:
    """(method, path) of each row `| `GET` | `/path` | ... |`."""
    return set(re.findall(r"^\| `([A-Z]+)` \| `([^`]+)` \|", _section(), re.M))


def documented_rpcs() -> set[str]:
    """The RPC names of the gRPC table (rows `| `Name` | ... |`)."""
    return set(re.findall(r"^\| `([A-Za-z]+)` \| [^`|]", _section(), re.M))
