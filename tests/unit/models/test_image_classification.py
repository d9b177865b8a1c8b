"""The generic classifier loads the user's own TorchScript or torch.export model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from prometheus_client import CollectorRegistry

from predictors.device import CPU
from predictors.models.base import ModelConfig, ModelFileError
from predictors.models.registry import predictor_class
from predictors.telemetry.metrics import Metrics
from tests.conftest import sample_image
from tests.unit.models.conftest import load_predictor


class TinyNet(torch.nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.head = torch.nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3))) * 10


LABELS = ["apple", "banana", "cherry", "durian"]


def write_dir(directory: Path, fmt: str, labels=LABELS, config: dict | None = None) -> Path:
    directory.mkdir(parents=True)
    torch.manual_seed(0)
    net = TinyNet().eval()
    if fmt == "torchscript":
        torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 32, 32)), str(directory / "model.pt"))
    else:
        batch = torch.export.Dim("batch", min=1, max=64)
        exported = torch.export.export(net, (torch.zeros(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
        torch.export.save(exported, str(directory / "model.pt2"))
    (directory / "labels.txt").write_text("\n".join(labels) + "\n")
    (directory / "config.json").write_text(json.dumps(config or {"input_size": 32, "resize": 40}))
    return directory, net


def classify(predictor, images, top_k=2):
    params = predictor.parse_parameters({"top_k": top_k})
    prepared = [predictor.prepare({"image": i}, params) for i in images]
    with torch.inference_mode():
        raw = predictor.forward(prepared, CPU)
    return prepared, [predictor.finish(p, r, params) for p, r in zip(prepared, raw, strict=True)]


@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_matches_the_original_network(tmp_path: Path, workers, fmt: str) -> None:
    directory, net = write_dir(tmp_path / fmt, fmt)
    predictor = load_predictor("image-classification", directory, workers)
    images = [sample_image(seed, (64, 48)) for seed in range(5)]
    prepared, results = classify(predictor, images)
    with torch.inference_mode():
        expected = net(torch.stack(prepared)).softmax(dim=1)
    for row, result in zip(expected, results, strict=True):
        probabilities, indices = row.topk(2)
        assert result["labels"] == [LABELS[i] for i in indices]
        assert result["scores"] == pytest.approx(probabilities.tolist(), rel=1e-5)


def test_top_k_is_capped_by_the_number_of_labels(tmp_path: Path, workers) -> None:
    directory, _ = write_dir(tmp_path / "d", "torchscript")
    predictor = load_predictor("image-classification", directory, workers)
    _, results = classify(predictor, [sample_image(1)], top_k=10)
    assert len(results[0]["labels"]) == 4


def test_label_count_must_match_the_network(tmp_path: Path, workers) -> None:
    directory, _ = write_dir(tmp_path / "d", "torchscript", labels=LABELS[:3])
    with pytest.raises(RuntimeError, match="one score per label"):
        load_predictor("image-classification", directory, workers)


def test_unknown_config_keys_are_refused(tmp_path: Path, workers) -> None:
    directory, _ = write_dir(tmp_path / "d", "torchscript", config={"input_size": 32, "inputsize": 3})
    with pytest.raises(ValueError, match="inputsize"):
        load_predictor("image-classification", directory, workers)


@pytest.mark.parametrize(
    ("damage", "file", "reason"),
    [
        (lambda d: (d / "labels.txt").unlink(), "labels.txt", "missing"),
        (lambda d: (d / "model.pt2").write_bytes((d / "model.pt2").read_bytes()[:500]), "model.pt2",
         "cannot be read ("),
        (lambda d: (d / "config.json").write_text("[1, 2"), "config.json", "cannot be read (JSONDecodeError: "),
    ],
    ids=["missing-labels", "truncated-model", "config-not-json"],
)
def test_a_broken_file_is_reported_by_name(tmp_path: Path, workers, damage, file: str, reason: str) -> None:
    directory, _ = write_dir(tmp_path / "d", "export")
    damage(directory)
    model = predictor_class("image-classification")(
        "d", directory, ModelConfig(device="cpu"), Metrics(CollectorRegistry()), workers)
    with pytest.raises(ModelFileError) as error:
        model.load()
    assert error.value.path == directory / file
    assert str(error.value).startswith(f"{directory / file}: {reason}")
    assert model.load_error == str(error.value) and "\n" not in model.load_error
