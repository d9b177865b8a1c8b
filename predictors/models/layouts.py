"""Each model's on-disk layout, defined once: the file names of its published directory and the network
constructors its weights load into. The model (`predictors.models.<model>`) loads with these and its demo
writer (`predictors.demo.<model>`) writes with them.

Kept apart from the model classes because it imports neither KServe nor the serving code (only torch, and
ModelScope inside the constructors): the demo writers run in processes that must not import KServe (the
integration tests' own process, whose tritonclient protobufs clash with KServe's).
"""

from __future__ import annotations

import torch

# ---- general-recognition (damo/cv_resnest101_general_recognition) ----------------------------------

GENERAL_RECOGNITION_WEIGHTS_FILE = "pytorch_model.pt"
GENERAL_RECOGNITION_LABELS_FILE = "meta_info.txt"
GENERAL_RECOGNITION_CLASSES = 54092


def build_resnest101() -> torch.nn.Module:
    """The exact architecture ModelScope's GeneralRecognitionPipeline builds."""
    from modelscope.models.cv.animal_recognition import resnet

    return resnet.ResNet(
        resnet.Bottleneck, [3, 4, 23, 3], radix=2, groups=1, bottleneck_width=64, deep_stem=True,
        stem_width=64, avg_down=True, avd=True, avd_first=False, num_classes=GENERAL_RECOGNITION_CLASSES,
    )


# ---- image-classification (your own classifier) ----------------------------------------------------

CLASSIFIER_SCRIPTED_FILE = "model.pt"
CLASSIFIER_EXPORTED_FILE = "model.pt2"
CLASSIFIER_LABELS_FILE = "labels.txt"
CLASSIFIER_CONFIG_FILE = "config.json"

# ---- face-enhancement (damo/cv_gpen_image-portrait-enhancement) -------------------------------------

GPEN_GENERATOR_FILE = "pytorch_model.pt"
GPEN_SR_FILE = "super_resolution/realesrnet_x2.pth"
GPEN_DETECTOR_FILE = "face_detection/RetinaFace-R50.pth"
GPEN_QUALITY_BACKBONE_FILE = "face_quality/eqface_backbone.pth"
GPEN_QUALITY_HEAD_FILE = "face_quality/eqface_quality.pth"
#: upstream's background super-resolution factor
GPEN_SR_SCALE = 2


def build_gpen_generator(size: int = 512) -> torch.nn.Module:
    """GPEN's generator exactly as ModelScope's pipeline builds it."""
    from modelscope.models.cv.image_portrait_enhancement import gpen

    return gpen.FullGenerator(size, 512, 8, 2, narrow=1)


def build_gpen_sr_network() -> torch.nn.Module:
    """The x2 RealESRNet background super-resolution network of the published directory."""
    from modelscope.models.cv.super_resolution import rrdbnet_arch

    return rrdbnet_arch.RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=32, num_block=23, num_grow_ch=32,
                                scale=GPEN_SR_SCALE)
