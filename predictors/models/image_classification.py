"""A generic predictor for the user's own torch image classifier.

Directory layout::

    model.pt        TorchScript (torch.jit.save) -- or model.pt2 from torch.export.save
    labels.txt      one label per line, in output order
    config.json     {"input_size": 224, "resize": 256, "mean": [...], "std": [...],
                     "interpolation": "bilinear", "outputs": "logits" | "probabilities"}

All config keys are optional; the defaults are the ImageNet recipe above.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from torchvision import transforms

from predictors.device import DeviceReplicas
from predictors.models.base import reading
from predictors.models.classification import ClassifierPredictor

INTERPOLATIONS = {
    "nearest": transforms.InterpolationMode.NEAREST,
    "bilinear": transforms.InterpolationMode.BILINEAR,
    "bicubic": transforms.InterpolationMode.BICUBIC,
}


class ClassifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_size: int = Field(224, ge=8, le=4096)
    resize: int = Field(256, ge=8, le=4096)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear"
    outputs: Literal["logits", "probabilities"] = "logits"


class ImageClassificationPredictor(ClassifierPredictor):
    predictor_name = "image-classification"

    def load_weights(self, device: torch.device) -> None:
        with reading(self.model_dir / "config.json") as path:
            config = ClassifierConfig.model_validate(json.loads(path.read_text()) if path.exists() else {})
        exported = self.model_dir / "model.pt2"
        if exported.exists():
            with reading(exported):
                network = torch.export.load(str(exported)).module()
        else:
            with reading(self.model_dir / "model.pt") as path:
                network = torch.jit.load(str(path), map_location="cpu")
            network.eval()
        self.replicas = DeviceReplicas({"network": network.to(device)}, device)
        with reading(self.model_dir / "labels.txt") as path:
            self.labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        self.outputs_probabilities = config.outputs == "probabilities"
        self.input_size = config.input_size
        self.transform = transforms.Compose([
            transforms.Resize(config.resize, interpolation=INTERPOLATIONS[config.interpolation]),
            transforms.CenterCrop(config.input_size),
            transforms.ToTensor(),
            transforms.Normalize(mean=list(config.mean), std=list(config.std)),
        ])

    def warmup_item(self) -> Mapping[str, Any]:
        return {"image": Image.new("RGB", (self.input_size, self.input_size), (128, 128, 128))}
