"""An unrecoverable CUDA error in a real server: the model stops being ready and the process exits 3.

The model directory holds a real TorchScript classifier that raises CUDA's own "illegal memory access"
message for bright pictures (the warm-up picture is grey), the way a corrupted CUDA context surfaces in
a forward pass; nothing in the server knows it is a test.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import torch
from PIL import Image

from tests.conftest import encode
from tests.support.server import run_server

ILLEGAL_ADDRESS = "CUDA error: an illegal memory access was encountered"


class FailsOnBrightPictures(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.mean() > 2.0):  # ImageNet-normalised white is ~2.4, the grey warm-up picture ~0.2
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.head(x.mean(dim=(2, 3)))


def write_model(directory: Path) -> Path:
    directory.mkdir()
    torch.jit.save(torch.jit.script(FailsOnBrightPictures().eval()), str(directory / "model.pt"))
    (directory / "labels.txt").write_text("a\nb\n")
    (directory / "config.json").write_text(json.dumps({"input_size": 32, "resize": 32}))
    return directory


def test_a_lost_device_makes_the_server_exit_for_a_restart(tmp_path: Path) -> None:
    directory = write_model(tmp_path / "image-classification")
    log = tmp_path / "server.log"
    white = base64.b64encode(encode(Image.new("RGB", (32, 32), (255, 255, 255)), "PNG")).decode()
    grey = base64.b64encode(encode(Image.new("RGB", (32, 32), (128, 128, 128)), "PNG")).decode()
    with run_server(["--model-dir", f"image-classification={directory}", "--device", "cpu"], log,
                    env={"OMP_NUM_THREADS": "1"}, wait_for=["image-classification"]) as server:
        url = f"{server.url}/v1/models/image-classification:predict"
        assert httpx.post(url, json={"instances": [{"image": {"b64": grey}}]}, timeout=30).status_code == 200
        failed = httpx.post(url, json={"instances": [{"image": {"b64": white}}]}, timeout=30)
        assert failed.status_code == 503 and failed.json()["code"] == "MODEL_NOT_READY"
        assert server.process.wait(60) == 3
    text = log.read_text()
    assert "image-classification lost its device" in text and ILLEGAL_ADDRESS in text
    assert "OpenCV threads: 1" in text
