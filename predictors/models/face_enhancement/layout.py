"""The on-disk layout of `damo/cv_gpen_image-portrait-enhancement`: its files and the networks its
weights load into. Imports neither KServe nor the serving code: the demo writer uses it in processes
that must not import KServe (tritonclient's protobufs clash with KServe's).
"""

from __future__ import annotations

import torch

GENERATOR_FILE = "pytorch_model.pt"
SR_FILE = "super_resolution/realesrnet_x2.pth"
DETECTOR_FILE = "face_detection/RetinaFace-R50.pth"
QUALITY_BACKBONE_FILE = "face_quality/eqface_backbone.pth"
QUALITY_HEAD_FILE = "face_quality/eqface_quality.pth"
#: upstream's background super-resolution factor
SR_SCALE = 2


def build_generator(size: int = 512) -> torch.nn.Module:
    """GPEN's generator exactly as ModelScope's pipeline builds it."""
    from modelscope.models.cv.image_portrait_enhancement import gpen

    return gpen.FullGenerator(size, 512, 8, 2, narrow=1)


def build_sr_network() -> torch.nn.Module:
    """The x2 RealESRNet background super-resolution network of the published directory."""
    from modelscope.models.cv.super_resolution import rrdbnet_arch

    return rrdbnet_arch.RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=32, num_block=23, num_grow_ch=32,
                                scale=SR_SCALE)
