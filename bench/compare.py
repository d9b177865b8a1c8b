"""Before/after of each face-enhancement optimisation, in one process, interleaved.

    .venv/bin/python -m bench.stages --compare --rounds 5

The machine these numbers come from is shared and busy, so an "old" run and a "new" run measured minutes
apart are not comparable. Here both paths run on the same prepared item, alternately (before, after,
before, after, ... ``rounds`` times, after one untimed call of each), and each change reports the median
of each side and the median and range of the per-round ratios (after / before): a change pays when the
whole range is below 1.

The "before" path is upstream's own code where the change replaced it (GPEN loaded without the depthwise
blurs, ModelScope's `sr_process` for the whole picture, NCHW copies of the networks loaded in NHWC), and
the last row runs the model's whole forward and paste-back on all of upstream's modules against its own.
Each change's parity is checked on the same item.
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


def nchw(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of a loaded module with upstream's (contiguous NCHW) weight layout."""
    return copy.deepcopy(module).to(memory_format=torch.contiguous_format)


def item_output(model: Any, prepared: Any, device: torch.device, modules: dict[str, torch.nn.Module] | None,
                super_resolve: Callable[[], np.ndarray] | None) -> np.ndarray:
    """`forward` then `compose` of one item; with `modules`/`super_resolve`, on those instead of the
    model's own (the "before" path: the model's instance attributes are swapped for the call only)."""
    replicas, method = model.replicas, model._super_resolve
    try:
        if modules is not None and super_resolve is not None:
            model.replicas = SimpleNamespace(on=lambda _device: modules)
            model._super_resolve = lambda *_: super_resolve()
        (raw,) = model.forward([prepared], device)
    finally:
        model.replicas, model._super_resolve = replicas, method
    return np.asarray(model.compose(prepared, raw)[0])


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

    from predictors.models.face_enhancement import layout, sr_tiles

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
        upstream_generator = layout.build_generator(model.size)
        upstream_generator.load_state_dict(modules["generator"].state_dict(), strict=True)
        upstream_modules = {**modules, "generator": upstream_generator.eval().to(device)}
        rows.append(row("GPEN blurs as depthwise convolutions", f"enhance (GPEN-{model.size}, {len(faces)} face)",
                        lambda: np.stack(model._enhance(upstream_modules, device, faces)),
                        lambda: np.stack(model._enhance(modules, device, faces)), rounds))

        # super-resolution: upstream's whole-picture pass against the tiled one (one tile at this size),
        # both on the network as upstream lays it out (contiguous NCHW weights)
        sr = modules["sr"]
        upstream_sr_net = copy.deepcopy(sr).to(memory_format=torch.contiguous_format)
        owner = SimpleNamespace(sr_model=upstream_sr_net, device=device, scale=layout.SR_SCALE)
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

        # EQFace and RetinaFace: upstream's NCHW weights against the loaded NHWC ones; parity on backbone
        # features (the demo's crafted heads give constant scores and boxes, which would hide a difference)
        crops = [face.aligned_112_rgb for face in prepared.faces] * 2  # originals + enhanced: one pass's size
        upstream_quality = {**modules, "quality_backbone": nchw(modules["quality_backbone"])}
        crops_input = torch.from_numpy(np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2)) / 128.0 - 1.0
        parity = relative_diff(*(net(crops_input, True)[1]
                                 for net in (upstream_quality["quality_backbone"], modules["quality_backbone"])))
        rows.append({**row("EQFace weights channels-last", f"face quality ({len(crops)} crops)",
                           lambda: model._face_quality(upstream_quality, device, crops)[0],
                           lambda: model._face_quality(modules, device, crops)[0], rounds),
                     "parity": f"backbone features max rel. diff {parity:.1e}"})
        upstream_detection = {**modules, "detector": nchw(modules["detector"])}
        detection_input = torch.from_numpy(prepared.img_bgr.astype(np.float32).transpose(2, 0, 1))[None]
        parity = max(relative_diff(a, b) for a, b in zip(
            upstream_detection["detector"].body(detection_input).values(),
            modules["detector"].body(detection_input).values(), strict=True))
        rows.append({**row("RetinaFace weights channels-last",
                           f"detect ({prepared.img_bgr.shape[1]}x{prepared.img_bgr.shape[0]})",
                           lambda: model._detect(upstream_detection, device, prepared.img_bgr)[0],
                           lambda: model._detect(modules, device, prepared.img_bgr)[0], rounds),
                     "parity": f"backbone features max rel. diff {parity:.1e}"})

        # all of it: the model's forward and paste-back with every upstream module against the loaded ones
        upstream_all = {**modules, "generator": upstream_modules["generator"], "sr": upstream_sr_net,
                        "quality_backbone": upstream_quality["quality_backbone"]}
        rows.append(row("all of the above", "forward + paste-back of the item (detection excluded)",
                        lambda: item_output(model, prepared, device, upstream_all, upstream_sr),
                        lambda: item_output(model, prepared, device, None, None), rounds))
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["\nface-enhancement: before/after, interleaved in one process (ratio = after / before)",
             "| change | stage | parity | before ms | after ms | ratio (range) | rounds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['change']} | {r['stage']} | {r['parity']} | {r['before_ms']} | {r['after_ms']} | "
                     f"{r['ratio']} ({r['ratio_range'][0]}-{r['ratio_range'][1]}) | {r['rounds']} |")
    return "\n".join(lines)
