"""Before/after of each face-enhancement optimisation, in one process, interleaved (issue 15, item 3).

    .venv/bin/python -m bench.stages --compare --rounds 5

The machine these numbers come from is shared and busy, so an "old" run and a "new" run measured minutes
apart are not comparable. Here both paths run on the same prepared item, alternately (before, after,
before, after, ... ``rounds`` times, after one untimed call of each), and each change reports the median
of each side and the median and range of the per-round ratios (after / before): a change pays when the
whole range is below 1.

The "before" path is upstream's own code where the change replaced it (GPEN loaded without the depthwise
blurs, ModelScope's `sr_process` for the whole picture); a candidate that was measured and not kept
(EQFace in channels-last) is built here only. Each change's parity is checked on the same item.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from bench.common import model_instance
from bench.inprocess import _decoded, _load


def interleaved(before: Callable[[], Any], after: Callable[[], Any], rounds: int) -> dict[str, Any]:
    before()  # first-call costs (allocator, oneDNN primitive caches) out of the picture
    after()
    times: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(rounds):
        for side, fn in (("before", before), ("after", after)):
            started = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - started)
    ratios = [a / b for a, b in zip(times["after"], times["before"], strict=True)]
    return {
        "before_ms": round(1000 * statistics.median(times["before"]), 1),
        "after_ms": round(1000 * statistics.median(times["after"]), 1),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "rounds": rounds,
    }


def grey_levels(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def relative_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest value (random-weight activations reach 1e3-1e5)."""
    return float((a - b).abs().max() / a.abs().max().clamp(min=1e-12))


def channels_last(module: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(module).to(memory_format=torch.channels_last)


def row(change: str, stage: str, before: Callable[[], Any], after: Callable[[], Any], rounds: int) -> dict[str, Any]:
    """One change: its parity on the item (images in grey levels, scores and boxes absolute), then its timing."""
    old, new = before(), after()
    if old.dtype == np.uint8:
        parity = f"max {grey_levels(old, new)} grey levels"
    else:
        parity = f"max abs diff {float(np.abs(old - new).max()):.1e}"
    return {"change": change, "stage": stage, "parity": parity, **interleaved(before, after, rounds)}


def compare_face_enhancement(directory: Path, rounds: int) -> list[dict[str, Any]]:
    from modelscope.pipelines.cv.image_portrait_enhancement_pipeline import ImagePortraitEnhancementPipeline

    from predictors.models import layouts, sr_tiles

    workers = ThreadPoolExecutor(2)
    runtime = _load(directory, workers)
    workers.shutdown()
    model = runtime.predictor
    device = runtime.device
    modules = model.replicas.on(device)
    item = _decoded(model_instance("face-enhancement", 0))
    prepared = model.prepare(item, model.parse_parameters({}))
    faces = [face.aligned_rgb for face in prepared.faces]
    rows = []
    with torch.inference_mode():
        # GPEN: upstream's generator (one-channel-conv blurs) against the loaded one (depthwise blurs)
        upstream_generator = layouts.build_gpen_generator(model.size)
        upstream_generator.load_state_dict(modules["generator"].state_dict(), strict=True)
        upstream_modules = {**modules, "generator": upstream_generator.eval().to(device)}
        rows.append(row("GPEN blurs as depthwise convolutions", f"enhance (GPEN-{model.size}, {len(faces)} face)",
                        lambda: np.stack(model._enhance(upstream_modules, device, faces)),
                        lambda: np.stack(model._enhance(modules, device, faces)), rounds))

        # super-resolution: upstream's whole-picture pass against the tiled one (one tile at this size),
        # both on the network as upstream lays it out (contiguous NCHW weights)
        sr = modules["sr"]
        upstream_sr_net = copy.deepcopy(sr).to(memory_format=torch.contiguous_format)
        owner = SimpleNamespace(sr_model=upstream_sr_net, device=device, scale=layouts.GPEN_SR_SCALE)
        rgb = prepared.rgb
        height, width = rgb.shape[:2]
        tile, overlap = model.options.sr_tile_size, model.options.sr_tile_overlap
        sr_stage = f"super-resolution ({width}x{height} background)"

        def upstream_sr() -> np.ndarray:
            return ImagePortraitEnhancementPipeline.sr_process(owner, rgb)  # type: ignore[arg-type]

        def tiled_sr(network: torch.nn.Module) -> Callable[[], np.ndarray]:
            return lambda: sr_tiles.super_resolve(network, rgb, device, tile, overlap)

        rows.append(row(f"super-resolution in tiles (sr_tile_size {tile})", sr_stage,
                        upstream_sr, tiled_sr(upstream_sr_net), rounds))
        rows.append(row("RealESRNet weights channels-last", sr_stage, tiled_sr(upstream_sr_net),
                        lambda: model._super_resolve(modules, device, rgb), rounds))

        # a candidate measured and not kept: EQFace in channels-last (parity: its features, see below)
        crops = [face.aligned_112_rgb for face in prepared.faces] * 2  # originals + enhanced: one pass's size
        eqface_cl = {**modules, "quality_backbone": channels_last(modules["quality_backbone"])}
        crops_input = torch.from_numpy(np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2)) / 128.0 - 1.0
        parity = relative_diff(*(net(crops_input, True)[1]
                                for net in (modules["quality_backbone"], eqface_cl["quality_backbone"])))
        rows.append({**row("EQFace weights channels-last (candidate)", f"face quality ({len(crops)} crops)",
                           lambda: model._face_quality(modules, device, crops)[0],
                           lambda: model._face_quality(eqface_cl, device, crops)[0], rounds),
                     "parity": f"backbone features max rel. diff {parity:.1e}"})
        # RetinaFace: upstream's NCHW weights against the loaded NHWC ones; parity on the raw network
        # outputs (the demo detector's heads are crafted constants, so its boxes would hide a difference)
        upstream_detector = copy.deepcopy(modules["detector"]).to(memory_format=torch.contiguous_format)
        upstream_detection = {**modules, "detector": upstream_detector}
        detection_input = torch.from_numpy(prepared.img_bgr.astype(np.float32).transpose(2, 0, 1))[None]
        parity = max(relative_diff(a, b) for a, b in zip(
            upstream_detector.body(detection_input).values(),
            modules["detector"].body(detection_input).values(), strict=True))
        rows.append({**row("RetinaFace weights channels-last",
                           f"detect ({prepared.img_bgr.shape[1]}x{prepared.img_bgr.shape[0]})",
                           lambda: model._detect(upstream_detection, device, prepared.img_bgr)[0],
                           lambda: model._detect(modules, device, prepared.img_bgr)[0], rounds),
                     "parity": f"backbone features max rel. diff {parity:.1e}"})
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["\nface-enhancement: before/after, interleaved in one process (ratio = after / before)",
             "| change | stage | parity | before ms | after ms | ratio (range) | rounds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['change']} | {r['stage']} | {r['parity']} | {r['before_ms']} | {r['after_ms']} | "
                     f"{r['ratio']} ({r['ratio_range'][0]}-{r['ratio_range'][1]}) | {r['rounds']} |")
    return "\n".join(lines)
