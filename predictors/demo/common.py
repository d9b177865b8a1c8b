"""Helpers shared by the demo directory writers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_predictor_json(directory: Path, predictor: str, **extra: Any) -> None:
    """Mark a directory as demo weights so the server says so loudly when it serves them."""
    content = {"predictor": predictor, "demo_weights": True, **extra}
    (directory / "predictor.json").write_text(json.dumps(content, indent=2) + "\n")
