"""`pip install clients/python` into a fresh virtualenv: httpx comes along, torch, KServe and ModelScope do
not, and the installed client answers from the real server. Needs PyPI (for httpx), which CI has."""

from __future__ import annotations

import json
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.conftest import encode, sample_image
from tests.support.server import ServerProcess

REPO = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "torchvision", "kserve", "modelscope", "numpy", "pillow", "grpcio", "tritonclient"}


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client-venv")
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    # from a copy: pip builds in the source tree, and the checkout should not collect build/ and egg-info
    sources = shutil.copytree(REPO / "clients" / "python", root / "client-sources")
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(sources)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    return python


def test_only_httpx_is_pulled_in(fresh_venv: Path) -> None:
    listed = subprocess.run([str(fresh_venv), "-m", "pip", "list", "--format", "json"], capture_output=True,
                            text=True, timeout=120, check=True)
    names = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert {"vision-predictors-client", "httpx"} <= names
    assert not names & HEAVY, names & HEAVY


def test_the_installed_client_calls_the_real_server(fresh_venv: Path, server: ServerProcess,
                                                   tmp_path: Path) -> None:
    (tmp_path / "cat.jpg").write_bytes(encode(sample_image(3), "JPEG"))
    script = (
        "import json, sys, predictors_client\n"
        "from predictors_client import Client\n"
        "assert 'predictors' not in sys.modules and 'numpy' not in sys.modules\n"
        "print(predictors_client.__file__)\n"
        f"print(json.dumps(Client({server.url!r}).classify('cat.jpg', top_k=3).labels))\n"
    )
    result = subprocess.run([str(fresh_venv), "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    location, labels = result.stdout.splitlines()
    assert location.startswith(str(fresh_venv.parents[1]))  # the installed copy, not the checkout
    assert len(json.loads(labels)) == 3
