"""Upstream's background super-resolution (`ImagePortraitEnhancementPipeline.sr_process`) in tiles.

Upstream runs RealESRNet on the whole picture at once: its activations grow with the area (32-160
channels at half and double resolution: several GB for a 2000 px picture). Here the picture is cut
into tiles of at most ``tile`` x ``tile`` input pixels, each run with ``overlap`` pixels of its
neighbours as context and only its own part kept, so the memory needed is bounded by the tile size,
not by the picture. A picture no larger than one tile is one tile: exactly upstream's computation.

Upstream's arithmetic is kept step for step: the whole picture is reflect-padded to even sides once
(as upstream does before its single pass), tiles start at even offsets (RealESRNet x2 starts with a
2x2 pixel-unshuffle, so every tile sees the same 2x2 cells as the whole picture), and the output is
cropped of the pad, clamped, turned to BGR and rounded to uint8 as upstream does. What differs at a
tile border is only that the network's zero padding stands where upstream sees more picture, ``overlap``
pixels away from any kept pixel; tests/unit/models/test_sr_tiles.py bounds the difference.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

#: RealESRNet x2 works on 2x2 cells (pixel-unshuffle): tile sizes, overlaps and offsets are multiples of it
CELL = 2


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(kept start, kept end, context start, context end) along one axis, in padded input pixels."""
    spans = []
    for start in range(0, length, tile):
        end = min(start + tile, length)
        spans.append((start, end, max(0, start - overlap), min(length, end + overlap)))
    return spans


def super_resolve(
    network: torch.nn.Module, rgb: np.ndarray, device: torch.device, tile: int, overlap: int, scale: int = 2
) -> np.ndarray:
    """RGB uint8 H x W x 3 in, x`scale` BGR uint8 out (upstream's `sr_process` for scale 2), in tiles."""
    if scale != CELL:
        raise ValueError(f"tiled super-resolution supports upstream's x2 only, not x{scale}")
    if tile < CELL or tile % CELL or overlap < 0 or overlap % CELL:
        raise ValueError(f"tile ({tile}) and overlap ({overlap}) must be multiples of {CELL}, tile > 0")
    img = torch.from_numpy(np.transpose(rgb.astype(np.float32) / 255.0, (2, 0, 1))).unsqueeze(0)
    height, width = rgb.shape[:2]
    h_pad, w_pad = height % CELL, width % CELL
    img = F.pad(img, (0, w_pad, 0, h_pad), "reflect")  # upstream pads the whole picture once
    padded_h, padded_w = img.shape[2:]
    # upstream crops only the pad (not scale x the pad) off its output
    out = np.empty((scale * padded_h - h_pad, scale * padded_w - w_pad, 3), np.uint8)
    with torch.no_grad():
        for y0, y1, cy0, cy1 in _spans(padded_h, tile, overlap):
            for x0, x1, cx0, cx1 in _spans(padded_w, tile, overlap):
                piece = network(img[:, :, cy0:cy1, cx0:cx1].to(device))
                top, left = scale * (y0 - cy0), scale * (x0 - cx0)
                rows = min(scale * y1, out.shape[0]) - scale * y0
                cols = min(scale * x1, out.shape[1]) - scale * x0
                kept = piece[0, :, top : top + rows, left : left + cols].float().cpu().clamp_(0, 1).numpy()
                del piece
                kept = np.transpose(kept[[2, 1, 0], :, :], (1, 2, 0))  # RGB -> BGR, as upstream
                out[scale * y0 : scale * y0 + rows, scale * x0 : scale * x0 + cols] = (
                    (kept * 255.0).round().astype(np.uint8)
                )
    return out
