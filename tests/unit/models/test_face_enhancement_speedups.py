"""Face enhancement speed-ups keep upstream's numbers.

- GPEN's blurs as depthwise convolutions (`predictors.models.face_enhancement.gpen_ops`): the same numbers as upstream's
  ``upfirdn2d_native``, bit for bit on the CPU (the depthwise convolution adds the same 16 products per
  output as upstream's one-channel convolution, in the same order), and the whole generator unchanged.
- RetinaFace and EQFace with channels-last weights: outputs within 1e-4 (relative) of upstream's layout.

RealESRNet's channels-last weights and tiles are checked in test_sr_tiles.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
from modelscope.models.cv.face_generation.op.upfirdn2d import upfirdn2d as upstream_upfirdn2d
from modelscope.models.cv.image_portrait_enhancement import gpen

from predictors.models.face_enhancement import layout
from predictors.models.face_enhancement.demo import generator_state
from predictors.models.face_enhancement.gpen_ops import upfirdn2d_depthwise, use_depthwise_blurs


def blur_kernel(upsample_factor: int = 1) -> torch.Tensor:
    return gpen.make_kernel([1, 3, 3, 1]) * upsample_factor**2


@pytest.mark.parametrize(
    ("up", "down", "pad", "shape"),
    [
        (1, 1, (2, 1), (2, 5, 17, 12)),  # Blur after an upsampling conv
        (2, 1, (2, 1), (1, 3, 9, 8)),  # Upsample (ToRGB skip)
        (1, 2, (1, 1), (2, 4, 16, 10)),  # Downsample
        (1, 1, (1, 2, 0, 3), (1, 2, 7, 9)),  # asymmetric four-value pad
        (1, 1, (-1, 2), (1, 2, 11, 11)),  # a negative pad crops
        (2, 2, (1, 0), (1, 2, 6, 5)),  # up and down together
    ],
)
def test_depthwise_upfirdn2d_equals_upstream(up: int, down: int, pad: tuple[int, ...], shape) -> None:
    torch.manual_seed(sum(shape))
    x = torch.randn(shape)
    kernel = blur_kernel(up) + torch.rand(4, 4)  # asymmetric: the kernel flip matters
    expected = upstream_upfirdn2d(x, kernel, up=up, down=down, pad=pad)
    ours = upfirdn2d_depthwise(x, kernel, up=up, down=down, pad=pad)
    assert ours.shape == expected.shape
    assert torch.equal(ours, expected)


def test_generator_with_depthwise_blurs_is_unchanged() -> None:
    """The real architecture (64 px, so the test is cheap) with demo weights, a batch of two faces."""
    upstream = layout.build_generator(64)
    upstream.load_state_dict(generator_state(64, torch.Generator().manual_seed(3)), strict=True)
    upstream.eval()
    ours = copy.deepcopy(upstream)
    switched = use_depthwise_blurs(ours)
    # every Blur, Upsample and Downsample: one per encoder downsampling, one per upsampling conv and
    # ToRGB skip, and a second call leaves the switched modules alone
    expected_count = sum(isinstance(m, (gpen.Blur, gpen.Upsample, gpen.Downsample)) for m in upstream.modules())
    assert switched == expected_count > 5
    assert use_depthwise_blurs(ours) == 0
    assert ours.state_dict().keys() == upstream.state_dict().keys()
    faces = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    # as the model feeds it: a permuted HWC array, channels-last in memory (oneDNN keeps that format)
    faces_hwc = faces.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    with torch.inference_mode():
        for batch in (faces, faces_hwc):
            expected, _ = upstream(batch)
            result, _ = ours(batch)
            assert expected.std() > 0.01  # a real output, not a constant
            assert torch.equal(result, expected)


def relative_difference(expected: torch.Tensor, result: torch.Tensor) -> float:
    assert expected.shape == result.shape
    assert expected.std() > 0  # a real output, not a constant
    return float((expected - result).abs().max() / expected.abs().max())


def test_eqface_in_channels_last_keeps_its_outputs() -> None:
    """The model loads EQFace's backbone with NHWC weights: its features (identity check) and the
    quality head's input stay within 1e-4 of upstream's NCHW network (real architecture, random weights;
    the demo's crafted EQFace gives constant answers)."""
    from modelscope.models.cv.image_portrait_enhancement.eqface.model_resnet import ResNet

    torch.manual_seed(6)
    upstream = ResNet(num_layers=100, feature_dim=512).eval()
    ours = copy.deepcopy(upstream).to(memory_format=torch.channels_last)
    crops = (torch.rand(2, 3, 112, 112) * 255 - 127.5) / 128.0  # upstream's normalised 112 px crops
    with torch.inference_mode():
        for expected, result in zip(upstream(crops, True), ours(crops, True), strict=True):
            assert relative_difference(expected, result) < 1e-4


def test_retinaface_in_channels_last_keeps_its_outputs() -> None:
    """The model loads RetinaFace with NHWC weights: the raw outputs (boxes, scores, landmarks) of the
    real architecture with random weights stay within 1e-4 of upstream's NCHW network (relative to the
    largest value, which is what decides boxes and the 0.9 threshold after the softmax)."""
    from modelscope.models.cv.image_portrait_enhancement.retinaface.detection import cfg_re50
    from modelscope.models.cv.image_portrait_enhancement.retinaface.models.retinaface import RetinaFace

    torch.manual_seed(5)
    upstream = RetinaFace(cfg=cfg_re50).eval()
    ours = copy.deepcopy(upstream).to(memory_format=torch.channels_last)
    image = torch.rand(1, 3, 96, 80) * 255 - 117  # upstream's mean-subtracted BGR floats
    with torch.inference_mode():
        for expected, result in zip(upstream(image), ours(image), strict=True):
            assert relative_difference(expected, result) < 1e-4
