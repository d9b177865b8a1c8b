"""Demo directory for the generic `image-classification` predictor: MobileNetV3-Small with random
weights saved with `torch.export` (dynamic batch size), ten labels and the ImageNet preprocessing recipe."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torchvision

from predictors.models.demo import write_predictor_json
from predictors.models.image_classification.layout import CONFIG_FILE, EXPORTED_FILE, LABELS_FILE

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write(directory: Path, seed: int = 0, first_class_bias: float = 0.0) -> Path:
    """The demo directory; another `seed`, or a `first_class_bias` added to the last layer's first class (the
    random network's scores are all ~0.1: a bias of 3 makes the top-1 score ~0.7), make other weights of the same
    architecture, e.g. a canary whose answers differ."""
    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():  # seed the initialisation without touching the caller's RNG
        torch.manual_seed(seed)
        network = torchvision.models.mobilenet_v3_small(num_classes=len(LABELS)).eval()
        # torchvision initialises the last layer near zero (all ten scores ~0.1); spread them out.
        network.classifier[-1].weight.data.mul_(300.0)
        network.classifier[-1].bias.data[0] += first_class_bias
    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(network, (torch.zeros(2, 3, 224, 224),), dynamic_shapes=({0: batch},))
    torch.export.save(exported, str(directory / EXPORTED_FILE))
    (directory / LABELS_FILE).write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    config = {"input_size": 224, "resize": 256, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
              "interpolation": "bilinear", "outputs": "logits"}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    write_predictor_json(directory, "image-classification")
    return directory
