"""`Settings.event_loop`: which loop `PredictorServer.serve` runs on."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import uvloop

from predictors.server.event_loop import EventLoopUnavailable, loop_factory


def _loop_type(factory: object) -> type:
    with asyncio.Runner(loop_factory=factory) as runner:  # type: ignore[arg-type]
        return type(runner.get_loop())


def test_auto_and_uvloop_run_on_uvloop() -> None:
    for choice in ("auto", "uvloop"):
        name, factory = loop_factory(choice)
        assert name == f"uvloop {uvloop.__version__}"
        assert issubclass(_loop_type(factory), uvloop.Loop)


def test_asyncio_runs_on_the_standard_library_loop() -> None:
    name, factory = loop_factory("asyncio")
    assert (name, factory) == ("asyncio", None)
    assert not issubclass(_loop_type(factory), uvloop.Loop)


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what `import uvloop` meets where it is not installed
    assert loop_factory("auto") == ("asyncio", None)
    with pytest.raises(EventLoopUnavailable, match="event_loop is uvloop but uvloop cannot be imported"):
        loop_factory("uvloop")


def test_serve_without_uvloop_exits_2_before_loading_models(tmp_path: Path) -> None:
    """`predictors serve --event-loop uvloop` where uvloop cannot be imported: one line, exit code 2 (the
    model directory holds no weights: the server stops before loading them)."""
    (tmp_path / "predictor.json").write_text('{"predictor": "image-classification"}')
    code = ("import sys; sys.modules['uvloop'] = None; from predictors.cli import main; "
            f"sys.exit(main(['serve', '--event-loop', 'uvloop', '--model-dir', 'x={tmp_path}']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "predictors serve: event_loop is uvloop but uvloop cannot be imported" in done.stderr
    assert "Traceback" not in done.stderr
