"""The CLI's commands that need no server: make-demo-models, and download up to the network call."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.support.server import free_port


def test_make_demo_models_writes_the_upstream_layouts(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "predictors", "make-demo-models", str(tmp_path),
                             "--models", "general-recognition"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    directory = tmp_path / "general-recognition"
    assert sorted(p.name for p in directory.iterdir()) == [
        "configuration.json", "meta_info.txt", "predictor.json", "pytorch_model.pt"]
    configuration = json.loads((directory / "configuration.json").read_text())
    assert configuration["task"] == "general-recognition" and "model" not in configuration
    assert json.loads((directory / "predictor.json").read_text())["demo_weights"] is True
    assert (directory / "pytorch_model.pt").stat().st_size < 40 * 1024 * 1024
    assert len((directory / "meta_info.txt").read_text(encoding="utf-8").splitlines()) == 54092


def test_unknown_demo_model_is_refused(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "predictors", "make-demo-models", str(tmp_path),
                             "--models", "speech"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "no demo weights for ['speech']" in result.stderr


class _RecordingHub(http.server.BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.paths.append(self.path)
        self.send_response(503)
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


def test_download_goes_to_the_hub_for_the_published_model(tmp_path: Path) -> None:
    """No network here: a loopback stand-in for the hub records what the real download code asks for."""
    port = free_port()
    hub = http.server.ThreadingHTTPServer(("127.0.0.1", port), _RecordingHub)
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "MODELSCOPE_ENDPOINT": f"http://127.0.0.1:{port}",
               "MODELSCOPE_CACHE": str(tmp_path / "cache")}
        result = subprocess.run([sys.executable, "-m", "predictors", "download", "general-recognition",
                                 str(tmp_path / "weights")], capture_output=True, text=True, timeout=300, env=env)
    finally:
        hub.shutdown()
    assert any("cv_resnest101_general_recognition" in path for path in _RecordingHub.paths), _RecordingHub.paths
    assert result.returncode == 1
    assert "could not fetch damo/cv_resnest101_general_recognition" in result.stderr
    assert "Traceback" not in result.stderr


def test_infer_without_the_client_sdk_says_how_to_install_it(tmp_path: Path) -> None:
    """The container image has no SDK: `predictors infer` explains instead of failing with a traceback."""
    image = tmp_path / "cat.jpg"
    image.write_bytes(b"not needed")
    code = ("import sys; sys.modules['predictors_client'] = None\n"  # None in sys.modules: the import fails
            "from predictors.cli import main\n"
            f"sys.exit(main(['infer', 'general-recognition', {str(image)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "pip install clients/python" in result.stderr and "Traceback" not in result.stderr
