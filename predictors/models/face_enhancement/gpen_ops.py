"""Faster, numerically identical replacements for operations of ModelScope's GPEN generator.

ModelScope's GPEN blurs, up- and downsamples with ``upfirdn2d_native`` on every device (its compiled
kernel is never built): it folds batch and channels into the batch dimension and runs a one-channel
4x4 convolution on it, which oneDNN runs ~4x slower than the same filter as a depthwise (grouped)
convolution. The profile of one 512 px face put these one-channel convolutions at ~40 % of the GPEN
pass. `upfirdn2d_depthwise` computes the same sums (zero-insertion for ``up``, padding or cropping,
the flipped kernel, every ``down``-th output) as one grouped convolution with stride ``down``; on the
CPU the result is bit-identical to upstream's (asserted in tests/unit/models/test_face_enhancement_speedups.py).

`use_depthwise_blurs` switches a loaded generator's `Blur`, `Upsample` and `Downsample` modules over;
their parameters, buffers and state-dict keys are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F


def upfirdn2d_depthwise(
    input: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: Sequence[int] = (0, 0)
) -> torch.Tensor:
    """Upstream's ``upfirdn2d(input, kernel, up, down, pad)`` (same up/down on both axes)."""
    x0, x1, y0, y1 = (pad[0], pad[1], pad[0], pad[1]) if len(pad) == 2 else pad
    batch, channels, height, width = input.shape
    out = input
    if up > 1:  # upstream inserts up-1 zeros after every sample
        out = input.new_zeros(batch, channels, height * up, width * up)
        out[:, :, ::up, ::up] = input
    out = F.pad(out, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    out = out[:, :, max(-y0, 0) : out.shape[2] - max(-y1, 0), max(-x0, 0) : out.shape[3] - max(-x1, 0)]
    # upstream's result is always contiguous NCHW (GPEN's encoder ends in a `view` that needs it), while
    # a convolution keeps its input's memory format: GPEN's input is an NHWC-strided permuted array
    out = out.contiguous()
    weight = torch.flip(kernel, [0, 1]).to(out.dtype).expand(channels, 1, *kernel.shape)
    return F.conv2d(out, weight, stride=down, groups=channels)


_FORWARDS = {
    "Blur": lambda self, input: upfirdn2d_depthwise(input, self.kernel, pad=self.pad),
    "Upsample": lambda self, input: upfirdn2d_depthwise(input, self.kernel, up=self.factor, pad=self.pad),
    "Downsample": lambda self, input: upfirdn2d_depthwise(input, self.kernel, down=self.factor, pad=self.pad),
}


_DEPTHWISE_CLASSES: dict[type[torch.nn.Module], type[torch.nn.Module]] = {}


def _depthwise_class(upstream: type[torch.nn.Module]) -> type[torch.nn.Module]:
    """A subclass of upstream's module class with only ``forward`` replaced (made once per class)."""
    if upstream not in _DEPTHWISE_CLASSES:
        _DEPTHWISE_CLASSES[upstream] = type(
            f"Depthwise{upstream.__name__}", (upstream,), {"forward": _FORWARDS[upstream.__name__]}
        )
    return _DEPTHWISE_CLASSES[upstream]


def use_depthwise_blurs(generator: torch.nn.Module) -> int:
    """Give every upfirdn2d module of `generator` the depthwise forward; -> how many were switched.

    Only ``forward`` changes: each module keeps its state (``kernel`` buffer, ``pad``, ``factor``), so
    loading, copying to a device and ``state_dict`` behave as before.
    """
    from modelscope.models.cv.image_portrait_enhancement import gpen

    upstream_classes = (gpen.Blur, gpen.Upsample, gpen.Downsample)
    switched = 0
    for module in generator.modules():
        if type(module) in upstream_classes:
            module.__class__ = _depthwise_class(type(module))
            switched += 1
    return switched
