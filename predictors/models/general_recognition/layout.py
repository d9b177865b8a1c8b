"""The on-disk layout of `damo/cv_resnest101_general_recognition`: its files and the network its
weights load into. Imports neither KServe nor the serving code: the demo writer uses it in processes
that must not import KServe (tritonclient's protobufs clash with KServe's).
"""

from __future__ import annotations

import torch

WEIGHTS_FILE = "pytorch_model.pt"
LABELS_FILE = "meta_info.txt"
CLASSES = 54092


def build_resnest101() -> torch.nn.Module:
    """The exact architecture ModelScope's GeneralRecognitionPipeline builds."""
    from modelscope.models.cv.animal_recognition import resnet

    return resnet.ResNet(
        resnet.Bottleneck, [3, 4, 23, 3], radix=2, groups=1, bottleneck_width=64, deep_stem=True,
        stem_width=64, avg_down=True, avd=True, avd_first=False, num_classes=CLASSES,
    )
