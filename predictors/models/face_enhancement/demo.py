"""Demo directory for `damo/cv_gpen_image-portrait-enhancement` in its published layout.

```
configuration.json                       task + pipeline type, as published
pytorch_model.pt                         GPEN FullGenerator(512, 512, 8, 2, narrow=1), every key (strict load)
super_resolution/realesrnet_x2.pth       RRDBNet(feat 32, 23 blocks, grow 32, x2) under `params_ema` (strict)
face_detection/RetinaFace-R50.pth        RetinaFace-R50: only the three prediction heads (crafted)
face_quality/eqface_backbone.pth         EQFace backbone: only the feature BatchNorm (crafted)
face_quality/eqface_quality.pth          EQFace quality head: only its BatchNorm and last layer (crafted)
predictor.json                           {"predictor": "face-enhancement", "demo_weights": true}
```

Random weights of the full GPEN generator and RealESRNet would take 323 MB; every large tensor here is
a view into one shared random buffer per initialisation scale (at a per-tensor offset), which
`torch.save` stores once, so the directory is ~20 MB. The super-resolution weights are scaled down
(0.03 of a unit normal) or the 23 residual blocks blow the output up (NaN); the last conv's bias
centres the output on mid-grey so the demo image is not black.

The detector and quality nets are crafted, never random (a random RetinaFace "finds" hundreds of faces):

- ``detector="one-face"`` (default): weights of the heads zero, so the answer does not depend on the
  picture; the stride-32 level's anchor 0 is biased to "face" with a huge box (so non-maximum
  suppression keeps exactly one of the per-cell candidates) and landmarks of a ~28 px frontal face
  around the cell centre. Every image has exactly one face: a 16x16 input (32x32 after the x2
  super-resolution) holds it entirely.
- ``detector="none"``: every anchor is biased to background, so no face is ever found.

The quality nets are crafted so the identity feature is a constant vector (cosine distance 0 between
the original and the enhanced face) and the quality score is ~1, so a found face is always enhanced
and pasted back, as a real portrait would be.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from predictors.models.demo import write_predictor_json
from predictors.models.face_enhancement.layout import (
    DETECTOR_FILE,
    GENERATOR_FILE,
    QUALITY_BACKBONE_FILE,
    QUALITY_HEAD_FILE,
    SR_FILE,
    build_generator,
    build_sr_network,
)

#: RetinaFace-R50 anchors per cell, and the anchor size of the stride-32 level (cfg_re50)
ANCHORS_PER_CELL = 2
STRIDE32_ANCHOR = 256.0
VARIANCE = (0.1, 0.2)
#: side of the crafted face around the centre of its cell, in pixels of the detection image
DEMO_FACE_SIDE = 28
#: scale of the super-resolution weights relative to a unit normal (larger -> NaN output)
SR_WEIGHT_SCALE = 0.03
#: bias of the last super-resolution conv: centres the (otherwise ~0) output on mid-grey
SR_OUTPUT_BIAS = 0.5

Detector = Literal["one-face", "none"]


def shared_buffer_state(
    fresh: dict[str, torch.Tensor],
    generator: torch.Generator,
    scale: float | None = None,
    min_numel: int = 1024,
) -> dict[str, torch.Tensor]:
    """Every key of `fresh`; large tensors become views into one random buffer per init scale.

    A tensor keeps the standard deviation of its own fresh initialisation (or `scale` for all), so
    layers with special init (StyleGAN's `lr_mul` weights, `bias_init=1` modulations) behave as at
    init. Small tensors (biases, noise strengths) are kept as freshly initialised.
    """
    groups: dict[float, int] = {}
    stds: dict[str, float] = {}
    for name, tensor in fresh.items():
        if tensor.is_floating_point() and tensor.numel() >= min_numel:
            std = float(tensor.float().std()) if scale is None else scale
            std = float(f"{std:.2g}")
            stds[name] = std
            groups[std] = max(groups.get(std, 0), tensor.numel())
    # Each buffer has room for its largest tensor plus some slack, so tensors start at different offsets.
    buffers = {
        std: torch.randn(int(size * 1.25) + 1, generator=generator) * std for std, size in groups.items()
    }
    state: dict[str, torch.Tensor] = {}
    for index, (name, tensor) in enumerate(fresh.items()):
        if name not in stds:
            state[name] = tensor.detach().clone()
            continue
        buffer = buffers[stds[name]]
        slack = buffer.numel() - tensor.numel()
        offset = (index * 7919) % (slack + 1)
        state[name] = buffer[offset : offset + tensor.numel()].view(tensor.shape)
    return state


def generator_state(size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        fresh = build_generator(size).state_dict()
    return shared_buffer_state(fresh, generator)


def sr_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        fresh = build_sr_network().state_dict()
    state = shared_buffer_state(fresh, generator, scale=SR_WEIGHT_SCALE, min_numel=1)
    for name, tensor in state.items():
        if name.endswith("bias"):
            state[name] = torch.zeros_like(tensor)
    state["conv_last.bias"] = torch.full_like(state["conv_last.bias"], SR_OUTPUT_BIAS)
    return state


def demo_landmarks(face_side: float = DEMO_FACE_SIDE) -> np.ndarray:
    """The 5 points (x, y) of a frontal face of `face_side` px centred on (0, 0), as GPEN aligns them."""
    from modelscope.models.cv.image_portrait_enhancement.align_faces import get_reference_facial_points

    points = get_reference_facial_points((512, 512), 0.25, (0, 0), True)  # what the aligner maps to
    return (np.asarray(points, dtype=np.float64) - 256.0) * (face_side / 512.0)


def detector_state(detector: Detector) -> dict[str, torch.Tensor]:
    """Only the class/box/landmark heads of RetinaFace-R50 (256 input channels, 3 levels)."""
    state: dict[str, torch.Tensor] = {}
    for level in range(3):
        for head, per_anchor in (("ClassHead", 2), ("BboxHead", 4), ("LandmarkHead", 10)):
            channels = ANCHORS_PER_CELL * per_anchor
            state[f"{head}.{level}.conv1x1.weight"] = torch.zeros(channels, 256, 1, 1)
            bias = torch.zeros(channels)
            if head == "ClassHead":
                bias[0::2] = 10.0  # background
                bias[1::2] = -10.0
            state[f"{head}.{level}.conv1x1.bias"] = bias
    if detector == "one-face":
        state["ClassHead.2.conv1x1.bias"][0:2] = torch.tensor([-10.0, 10.0])  # anchor 0: face
        # box: huge (256 px * e^5), so every cell's candidate overlaps the others and NMS keeps one
        state["BboxHead.2.conv1x1.bias"][0:4] = torch.tensor([0.0, 0.0, 25.0, 25.0])
        # landmarks relative to the anchor centre, in units of variance * anchor size
        offsets = demo_landmarks() / (VARIANCE[0] * STRIDE32_ANCHOR)
        state["LandmarkHead.2.conv1x1.bias"][0:10] = torch.tensor(offsets.reshape(-1), dtype=torch.float32)
    elif detector != "none":
        raise ValueError(f"detector must be 'one-face' or 'none', got {detector!r}")
    return state


def quality_states() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """EQFace backbone: constant identity feature; quality head: constant quality ~1."""
    backbone = {
        "feature_layer.1.weight": torch.zeros(512),
        "feature_layer.1.bias": torch.ones(512),
        "feature_layer.1.running_mean": torch.zeros(512),
        "feature_layer.1.running_var": torch.ones(512),
    }
    bias = torch.zeros(512)
    bias[0] = 1.0
    last = torch.zeros(2, 512)
    last[0, 0], last[1, 0] = 10.0, -10.0
    quality = {
        "qualtiy.1.weight": torch.zeros(512),  # (sic) upstream's attribute name
        "qualtiy.1.bias": bias,
        "qualtiy.1.running_mean": torch.zeros(512),
        "qualtiy.1.running_var": torch.ones(512),
        "qualtiy.3.weight": last,
    }
    return backbone, quality


def write(
    directory: Path,
    seed: int = 0,
    detector: Detector = "one-face",
    size: int = 512,
    **predictor_options: object,
) -> Path:
    """Write the directory; `size=1024` writes the `-hires` generator (name the directory with `hires`)."""
    if size not in (512, 1024):
        raise ValueError("size must be 512 or 1024")
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    configuration = {
        "framework": "pytorch",
        "task": "image-portrait-enhancement",
        "pipeline": {"type": "gpen-image-portrait-enhancement"},
    }
    (directory / "configuration.json").write_text(json.dumps(configuration, indent=2) + "\n")
    for sub in ("super_resolution", "face_detection", "face_quality"):
        (directory / sub).mkdir(exist_ok=True)
    torch.save(generator_state(size, generator), directory / GENERATOR_FILE)
    torch.save({"params_ema": sr_state(generator)}, directory / SR_FILE)
    torch.save(detector_state(detector), directory / DETECTOR_FILE)
    backbone, quality = quality_states()
    torch.save(backbone, directory / QUALITY_BACKBONE_FILE)
    torch.save(quality, directory / QUALITY_HEAD_FILE)
    extra = {"options": dict(predictor_options)} if predictor_options else {}
    write_predictor_json(directory, "face-enhancement", **extra)
    return directory
