"""Demo model repository: random/crafted weights of the real architectures in the upstream layouts.

No weights can be downloaded on an offline machine, so the demo repository lets the server, its
tests and the container run the real loading code end to end. Every demo directory carries
``predictor.json`` with ``"demo_weights": true`` and the server warns loudly when it serves one.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from predictors.models.catalog import MODELS

logger = logging.getLogger(__name__)

#: model name -> "module:function" writing its demo directory (from the one registration per model)
DEMO_WRITERS = {model.name: model.demo_writer for model in MODELS}


def make_demo_repository(root: Path, models: Iterable[str] | None = None, overwrite: bool = False) -> list[Path]:
    names = list(models) if models else list(DEMO_WRITERS)
    unknown = sorted(set(names) - set(DEMO_WRITERS))
    if unknown:
        raise ValueError(f"no demo weights for {unknown}; available: {sorted(DEMO_WRITERS)}")
    root = root.resolve()
    written = []
    for name in names:
        directory = root / name
        if (directory / "predictor.json").exists() and not overwrite:
            logger.info("%s exists; keeping it", directory)
            written.append(directory)
            continue
        module, _, function = DEMO_WRITERS[name].partition(":")
        getattr(importlib.import_module(module), function)(directory)
        logger.info("wrote demo model %s", directory)
        written.append(directory)
    return written


def write_predictor_json(directory: Path, predictor: str, **extra: Any) -> None:
    """Mark a directory as demo weights so the server says so loudly when it serves them."""
    content = {"predictor": predictor, "demo_weights": True, **extra}
    (directory / "predictor.json").write_text(json.dumps(content, indent=2) + "\n")
