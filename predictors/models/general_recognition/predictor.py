"""General recognition ("万物识别", ModelScope `damo/cv_resnest101_general_recognition`).

Loads the published directory (`pytorch_model.pt`, `meta_info.txt`, `configuration.json`) into
ModelScope's own ResNeSt-101 and reproduces the upstream pipeline's preprocessing exactly (resize the
shorter side to 256, centre crop 224, ImageNet normalisation). Unlike upstream it runs on the selected
device, in batches, reads the label file once and returns softmax top-k instead of one raw logit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision import transforms

from predictors.device import DeviceReplicas
from predictors.models.base import ModelFileError, reading
from predictors.models.classification import ClassifierPredictor
from predictors.models.general_recognition import layout

logger = logging.getLogger(__name__)

WEIGHTS_FILE = layout.WEIGHTS_FILE
LABELS_FILE = layout.LABELS_FILE
NUM_CLASSES = layout.CLASSES
build_resnest101 = layout.build_resnest101


def read_labels(path: Path) -> list[str]:
    """`id<TAB>label` per line; upstream indexes lines by class and keeps the label after the tab."""
    labels = []
    for line in path.read_text(encoding="utf-8").splitlines():
        _, tab, label = line.partition("\t")
        labels.append(label if tab else line)
    return labels


def load_matching_weights(network: torch.nn.Module, checkpoint: Mapping[str, Any]) -> tuple[int, int]:
    """Copy the checkpoint tensors whose name and shape match, as upstream's `filter_param` does."""
    if "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    own = network.state_dict()
    copied = 0
    for name, tensor in checkpoint.items():
        name = name[len("module."):] if name.startswith("module.") else name
        if name in own and own[name].shape == tensor.shape:
            own[name].copy_(tensor)
            copied += 1
    network.load_state_dict(own)
    return copied, len(own)


class GeneralRecognitionPredictor(ClassifierPredictor):
    predictor_name = "general-recognition"

    def load_weights(self, device: torch.device) -> None:
        network = build_resnest101()
        with reading(self.model_dir / WEIGHTS_FILE) as path:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            copied, total = load_matching_weights(network, checkpoint)
        if copied < total:
            logger.warning("model %s: %d of %d tensors found in %s; the rest keep random initial values",
                           self.name, copied, total, WEIGHTS_FILE)
        with reading(self.model_dir / LABELS_FILE) as path:
            self.labels = read_labels(path)
        if len(self.labels) < NUM_CLASSES:
            raise ModelFileError(self.model_dir / LABELS_FILE,
                                 f"has {len(self.labels)} lines; the model has {NUM_CLASSES} classes")
        self.labels = self.labels[:NUM_CLASSES]
        self.replicas = DeviceReplicas({"network": network.eval()}, device)
        self.transform = transforms.Compose([
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ])

    def warmup_item(self) -> Mapping[str, Any]:
        return {"image": Image.new("RGB", (256, 256), (128, 128, 128))}
