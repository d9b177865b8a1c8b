"""Demo directory for `damo/cv_resnest101_general_recognition` in its published layout.

The checkpoint holds every tensor of the real ResNeSt-101 (54092 classes), so loading is fully
deterministic (the same answers in every process), but the tensors are views into a few shared random
buffers (one per fan-in, He-scaled so activations stay finite through 101 layers): torch.save stores a
storage once, so the file is ~33 MB instead of 630 MB. BatchNorm keeps identity statistics.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from predictors.models.demo import write_predictor_json
from predictors.models.general_recognition.layout import CLASSES as NUM_CLASSES
from predictors.models.general_recognition.layout import LABELS_FILE, WEIGHTS_FILE, build_resnest101

FEATURES = 2048


def crafted_state_dict(seed: int = 0, favoured_class: int | None = None) -> dict[str, torch.Tensor]:
    """Every key of the real model; `favoured_class` gets a large bias so it always wins top-1."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {name: tensor.shape for name, tensor in build_resnest101().state_dict().items()}
    # One random buffer per fan-in (He-style scale), sized for the largest tensor with that fan-in.
    needed: dict[int, int] = {}
    for name, shape in shapes.items():
        if len(shape) > 1 and not name.startswith("fc."):
            fan_in = shape[1:].numel()
            needed[fan_in] = max(needed.get(fan_in, 0), shape.numel())
    buffers = {
        fan_in: torch.randn(size, generator=generator) * (1.0 / fan_in) ** 0.5 for fan_in, size in needed.items()
    }
    fc_buffer = torch.randn(NUM_CLASSES + FEATURES, generator=generator) * (1.0 / FEATURES) ** 0.5
    state: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        if name == "fc.weight":
            # Row i is the window of the buffer starting at i: distinct rows from 56 k floats of storage.
            state[name] = fc_buffer.as_strided(tuple(shape), (1, 1))
        elif name == "fc.bias":
            bias = torch.zeros(NUM_CLASSES)
            if favoured_class is not None:
                bias[favoured_class] = 1e4
            state[name] = bias
        elif name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(0, dtype=torch.long)
        elif len(shape) > 1:
            state[name] = buffers[shape[1:].numel()][: shape.numel()].view(shape)
        elif name.endswith("running_var") or name.endswith(".weight"):
            state[name] = torch.ones(shape)
        else:  # running_mean, biases
            state[name] = torch.zeros(shape)
    return state


def write(directory: Path, seed: int = 0, favoured_class: int | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    configuration = {
        "framework": "pytorch",
        "task": "general-recognition",
        "pipeline": {"type": "resnet101-general-recognition"},
    }
    (directory / "configuration.json").write_text(json.dumps(configuration, indent=2))
    torch.save(crafted_state_dict(seed, favoured_class), directory / WEIGHTS_FILE)
    labels = "".join(f"{i}\t演示类别{i}\n" for i in range(NUM_CLASSES))
    (directory / LABELS_FILE).write_text(labels, encoding="utf-8")
    write_predictor_json(directory, "general-recognition")
    return directory
