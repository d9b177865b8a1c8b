"""The generic classifier loads the user's own TorchScript or torch.export model."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from PIL import Image
from prometheus_client import CollectorRegistry

from predictors.device import CPU, DeviceLost, copy_to_device, warmup_batch_sizes
from predictors.kserve_compat import metric_value
from predictors.models.base import ModelConfig, ModelFileError
from predictors.models.registry import predictor_class
from predictors.runtime import ModelRuntime
from predictors.telemetry.metrics import Metrics
from tests.conftest import sample_image
from tests.unit.models.conftest import load_predictor, load_runtime


class TinyNet(torch.nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.head = torch.nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3))) * 10


META = torch.device("meta")
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


class CreatesTensors(TinyNet):
    """Creates tensors in its graph, as many real models do (positional tables, masks, offsets)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # written the portable way; export and trace still record the device they saw
        logits = self.head(self.conv(x).mean(dim=(2, 3))) * 10
        return logits + torch.ones(4, device=x.device) + torch.arange(4, device=x.device)


def write_creating_dir(directory: Path, fmt: str) -> Path:
    directory.mkdir(parents=True)
    torch.manual_seed(0)
    net = CreatesTensors().eval()
    example = torch.zeros(2, 3, 32, 32)
    if fmt == "export":
        batch = torch.export.Dim("batch", min=1, max=64)
        torch.export.save(torch.export.export(net, (example,), dynamic_shapes=({0: batch},)),
                          str(directory / "model.pt2"))
    elif fmt == "script":
        torch.jit.save(torch.jit.script(net), str(directory / "model.pt"))
    else:
        torch.jit.save(torch.jit.trace(net, example), str(directory / "model.pt"))
    (directory / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (directory / "config.json").write_text(json.dumps({"input_size": 32, "resize": 40}))
    return directory


def unloaded(directory: Path, device: str = "cpu"):
    return predictor_class("image-classification")("image-classification", directory, ModelConfig(device=device))


def unloaded_runtime(directory: Path, workers, name: str = "image-classification") -> ModelRuntime:
    model = predictor_class("image-classification")(name, directory, ModelConfig(device="cpu"))
    return ModelRuntime(model, Metrics(CollectorRegistry()), workers)


def graph_devices(module: torch.nn.Module) -> set[str]:
    return {str(node.kwargs["device"]) for node in module.graph.nodes if "device" in node.kwargs}


def test_exported_graph_constants_move_to_the_primary_device(tmp_path: Path, workers) -> None:
    """`.to(device)` leaves the devices written into an exported graph behind; the export pass moves them."""
    directory = write_creating_dir(tmp_path / "export", "export")
    naive = copy_to_device(torch.export.load(str(directory / "model.pt2")).module(), META)
    with pytest.raises(RuntimeError, match="expected device meta"):
        naive(torch.zeros(3, 3, 32, 32, device=META))

    predictor = unloaded(directory)
    predictor.load_weights(META)
    on_meta = predictor.replicas.on(META)["network"]
    assert graph_devices(on_meta) == {"meta"}
    assert on_meta(torch.zeros(3, 3, 32, 32, device=META)).shape == (3, 4)
    on_cpu = predictor.replicas.on(CPU)["network"]  # the fallback replica keeps the CPU graph
    assert graph_devices(on_cpu) == {"cpu"}
    assert on_cpu(torch.zeros(3, 3, 32, 32)).device == CPU


def test_scripted_models_follow_the_input_device(tmp_path: Path, workers) -> None:
    predictor = unloaded(write_creating_dir(tmp_path / "script", "script"))
    predictor.load_weights(META)
    network = predictor.replicas.on(META)["network"]
    assert {tensor.device for tensor in network.parameters()} == {META}
    assert network(torch.zeros(2, 3, 32, 32, device=META)).device == META


def test_traced_models_with_baked_devices_are_refused_off_the_cpu(tmp_path: Path, workers) -> None:
    directory = write_creating_dir(tmp_path / "trace", "trace")
    with pytest.raises(ValueError, match=r"creates tensors on \['cpu'\].*torch.jit.script"):
        unloaded(directory).load_weights(META)
    # on the CPU the same file is fine (the baked device is the one it runs on)
    assert load_runtime("image-classification", directory, workers).ready


def test_warm_up_runs_on_the_device_thread(tmp_path: Path, workers) -> None:
    directory, _ = write_dir(tmp_path / "d", "torchscript")
    runtime = unloaded_runtime(directory, workers)
    predictor = runtime.predictor
    forwards: list[tuple[str, int]] = []
    forward = predictor.forward

    def recording_forward(batch, device):
        forwards.append((threading.current_thread().name, len(batch)))
        return forward(batch, device)

    predictor.forward = recording_forward
    runtime.load()
    # on the CPU one batch of 1 (warmup_batch_sizes); on the runner's thread, not this loader thread
    assert [size for _, size in forwards] == warmup_batch_sizes(CPU, 8) == [1]
    assert all(name.startswith("torch-cpu") for name, _ in forwards)
    assert runtime.ready


class FailsOnBrightPictures(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.mean() > 2.0):  # ImageNet-normalised white is ~2.4, the grey warm-up picture ~0.2
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_a_lost_device_makes_the_model_not_ready(tmp_path: Path, workers) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    torch.jit.save(torch.jit.script(FailsOnBrightPictures().eval()), str(directory / "model.pt"))
    (directory / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (directory / "config.json").write_text(json.dumps({"input_size": 32, "resize": 40}))
    runtime = load_runtime("image-classification", directory, workers)
    predictor = runtime.predictor
    told: list[str] = []
    runtime.on_device_lost = told.append
    white = predictor.prepare({"image": Image.new("RGB", (40, 40), (255, 255, 255))}, None)
    with pytest.raises(DeviceLost, match="illegal memory access"):
        predictor.run_on_device(predictor.forward, [white])
    assert told == ["image-classification"] and not runtime.ready
    assert metric_value(runtime.metrics.model_ready.labels("image-classification")) == 0


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
    model = unloaded_runtime(directory, workers, name="d")
    with pytest.raises(ModelFileError) as error:
        model.load()
    assert error.value.path == directory / file
    assert str(error.value).startswith(f"{directory / file}: {reason}")
    assert model.load_error == str(error.value) and "\n" not in model.load_error
