"""A generic predictor for the user's own torch image classifier.

Directory layout::

    model.pt        TorchScript (torch.jit.save) -- or model.pt2 from torch.export.save
    labels.txt      one label per line, in output order
    config.json     {"input_size": 224, "resize": 256, "mean": [...], "std": [...],
                     "interpolation": "bilinear", "outputs": "logits" | "probabilities"}

All config keys are optional; the defaults are the ImageNet recipe above.

On a GPU the network is loaded once per device (CPU for the out-of-memory fallback, and the GPU):
exported programs are moved with `torch.export.passes.move_to_device_pass` (which also rewrites the
devices of tensors the graph creates), TorchScript is loaded with `map_location`. A traced module that
creates tensors has their device baked in and is refused with an explanation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from torch.export.passes import move_to_device_pass
from torchvision import transforms

from predictors.device import CPU, DeviceReplicas
from predictors.models.base import reading
from predictors.models.classification import ClassifierPredictor
from predictors.models.image_classification import layout

SCRIPTED_FILE = layout.SCRIPTED_FILE
EXPORTED_FILE = layout.EXPORTED_FILE
LABELS_FILE = layout.LABELS_FILE
CONFIG_FILE = layout.CONFIG_FILE

INTERPOLATIONS = {
    "nearest": transforms.InterpolationMode.NEAREST,
    "bilinear": transforms.InterpolationMode.BILINEAR,
    "bicubic": transforms.InterpolationMode.BICUBIC,
}


def baked_devices(script: torch.jit.ScriptModule) -> set[str]:
    """The devices written as constants into a TorchScript module's forward graph (submodules inlined)
    that create tensors there; a constant only used to move a result (`x.to("cpu")`) does no harm."""
    devices: set[str] = set()
    graph = script.inlined_graph  # referenced until the end: its nodes die with it
    blocks: list[Any] = [graph]
    while blocks:
        for node in blocks.pop().nodes():
            if (node.kind() == "prim::Constant" and isinstance(node.output().type(), torch._C.DeviceObjType)
                    and any(use.user.kind() != "aten::to" for use in node.output().uses())):
                devices.add(str(node.output().toIValue()))
            blocks.extend(node.blocks())
    return devices


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
        with reading(self.model_dir / CONFIG_FILE) as path:
            config = ClassifierConfig.model_validate(json.loads(path.read_text()) if path.exists() else {})
        self.replicas = DeviceReplicas({"network": self._load_network(CPU)}, device,
                                       to_device=lambda _cpu_module, target: self._load_network(target))
        with reading(self.model_dir / LABELS_FILE) as path:
            self.labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        self.outputs_probabilities = config.outputs == "probabilities"
        self.input_size = config.input_size
        self.transform = transforms.Compose([
            transforms.Resize(config.resize, interpolation=INTERPOLATIONS[config.interpolation]),
            transforms.CenterCrop(config.input_size),
            transforms.ToTensor(),
            transforms.Normalize(mean=list(config.mean), std=list(config.std)),
        ])

    def _load_network(self, device: torch.device) -> torch.nn.Module:
        """The network on `device`, read from the file again for each device: `.to(device)` moves
        parameters and buffers but not the devices written into the graph (tensors the model creates)."""
        exported = self.model_dir / EXPORTED_FILE
        if exported.exists():
            with reading(exported):
                program = torch.export.load(str(exported))
            if device != CPU:
                program = move_to_device_pass(program, device)
            return program.module()
        with reading(self.model_dir / SCRIPTED_FILE) as path:
            script = torch.jit.load(str(path), map_location=device)
        baked = baked_devices(script) - {str(device)}
        if baked:
            raise ValueError(
                f"{self.model_dir / SCRIPTED_FILE} creates tensors on {sorted(baked)}, written into its graph "
                f"(torch.jit.trace records devices as constants), so it cannot run on {device}: script it "
                f"(torch.jit.script keeps x.device), or save it with torch.export ({EXPORTED_FILE})"
            )
        return script.eval()

    def warmup_item(self) -> Mapping[str, Any]:
        return {"image": Image.new("RGB", (self.input_size, self.input_size), (128, 128, 128))}
