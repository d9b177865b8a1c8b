"""The CLI's commands that need no server: make-demo-models, and download up to the network call."""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
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


def test_serve_exits_2_on_a_mistyped_model_option(tmp_path: Path) -> None:
    directory = tmp_path / "face-enhancement"
    directory.mkdir()
    (directory / "predictor.json").write_text(json.dumps({"options": {"review_treshold": 0.3}}))
    done = subprocess.run([sys.executable, "-m", "predictors", "serve", "--model-repository", str(tmp_path),
                           "--http-port", str(free_port()), "--grpc-port", str(free_port())],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "review_treshold" in done.stderr and "Extra inputs are not permitted" in done.stderr


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


def _documented_configuration_rows() -> list[tuple[str, str]]:
    """(flag cell, env cell) of each row of docs/configuration.md's settings table."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    rows = [line.split("|")[1:3] for line in page.splitlines() if line.startswith("| `")]
    return [(flag.strip(), env.strip()) for flag, env in rows]


def test_every_setting_is_a_flag_and_a_documented_row() -> None:
    """docs/configuration.md's table, the `serve` flags and `Settings` name the same settings: a row whose flag
    the CLI does not take (as `--cpu-forward-nice` once was) fails here."""
    from predictors.cli import build_parser
    from predictors.settings import Settings

    rows = _documented_configuration_rows()
    documented_envs = {env for _, cell in rows for env in re.findall(r"PREDICTORS_[A-Z_]+", cell)}
    assert documented_envs == {f"PREDICTORS_{name.upper()}" for name in Settings.model_fields}
    serve = next(action for action in build_parser()._subparsers._group_actions  # noqa: SLF001
                 if isinstance(action, argparse._SubParsersAction)).choices["serve"]  # noqa: SLF001
    taken = {option for action in serve._actions for option in action.option_strings}  # noqa: SLF001
    documented_flags = {flag for cell, _ in rows for flag in re.findall(r"--[a-z-]+", cell)}
    assert documented_flags - taken == set(), "documented flags serve does not take"
    flag_dests = {action.dest for action in serve._actions if action.option_strings} - {"help"}  # noqa: SLF001
    assert flag_dests == set(Settings.model_fields), "a setting without a flag, or a flag that is no setting"
