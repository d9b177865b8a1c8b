"""Tiled background super-resolution (`predictors.models.face_enhancement.sr_tiles`) against upstream's whole-picture
`sr_process`, on the published RealESRNet x2 architecture with demo weights.

One tile is upstream's computation exactly; several tiles with the default overlap stay within 1 grey
level (measured on these weights: 76 grey levels apart with no overlap, 2 with 8 px, 1 from 16 px), and
the network never sees more than a tile plus its context, whatever the picture's size. The model runs
the network with channels-last (NHWC) weights; the reference is upstream's NCHW network.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from modelscope.pipelines.cv.image_portrait_enhancement_pipeline import ImagePortraitEnhancementPipeline

from predictors.device import CPU
from predictors.models.base import ModelConfig
from predictors.models.face_enhancement import demo, layout
from predictors.models.face_enhancement.predictor import DEFAULT_SR_TILE_OVERLAP, FaceEnhancementPredictor
from predictors.models.face_enhancement.sr_tiles import super_resolve
from tests.conftest import sample_image
from tests.unit.models.conftest import load_predictor


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    sr = layout.build_sr_network()
    sr.load_state_dict(demo.sr_state(torch.Generator().manual_seed(1)), strict=True)
    return sr.eval()


def upstream_sr(network: torch.nn.Module, rgb: np.ndarray) -> np.ndarray:
    owner = SimpleNamespace(sr_model=network, device=CPU, scale=layout.SR_SCALE)
    return ImagePortraitEnhancementPipeline.sr_process(owner, rgb)  # type: ignore[arg-type]


def picture(seed: int, width: int, height: int) -> np.ndarray:
    return np.asarray(sample_image(seed, (width, height)).convert("RGB"))


@pytest.mark.parametrize("size", [(40, 30), (41, 29)], ids=["even", "odd"])
def test_one_tile_is_upstreams_pass_exactly(network, size) -> None:
    rgb = picture(1, *size)
    expected = upstream_sr(network, rgb)
    assert expected.std() > 5
    assert np.array_equal(super_resolve(network, rgb, CPU, tile=64, overlap=DEFAULT_SR_TILE_OVERLAP), expected)


@pytest.mark.parametrize("size", [(150, 121), (97, 64)], ids=["odd-height", "tile-multiple-width"])
def test_tiles_stay_within_one_grey_level(network, size) -> None:
    rgb = picture(2, *size)
    expected = upstream_sr(network, rgb)
    shapes: list[tuple[int, ...]] = []
    hook = network.register_forward_pre_hook(lambda _, args: shapes.append(tuple(args[0].shape)))
    try:
        tiled = super_resolve(network, rgb, CPU, tile=32, overlap=DEFAULT_SR_TILE_OVERLAP)
    finally:
        hook.remove()
    assert tiled.shape == expected.shape
    diff = np.abs(tiled.astype(int) - expected.astype(int))
    print(f"tiled {size}: max {diff.max()}, differing {np.mean(diff > 0):.2e}")
    assert diff.max() <= 1
    # bounded: every pass sees at most a tile plus its context on each side, and there were several
    assert len(shapes) > 4
    assert max(max(s[2:]) for s in shapes) <= 32 + 2 * DEFAULT_SR_TILE_OVERLAP
    # the overlap is what keeps the tiles' borders right: without it they show
    seams = np.abs(super_resolve(network, rgb, CPU, tile=32, overlap=0).astype(int) - expected.astype(int))
    assert seams.max() > 10


@pytest.mark.parametrize(("tile", "overlap"), [(0, 0), (31, 0), (32, 3), (32, -2)])
def test_tile_sizes_must_fit_the_2x2_cells(network, tile, overlap) -> None:
    with pytest.raises(ValueError):
        super_resolve(network, picture(3, 8, 8), CPU, tile=tile, overlap=overlap)


def test_the_model_tiles_with_its_options(tmp_path: Path, workers) -> None:
    directory = demo.write(tmp_path / "gpen", seed=2, detector="none")
    predictor = load_predictor("face-enhancement", directory, workers)
    assert isinstance(predictor, FaceEnhancementPredictor)
    assert (predictor.options.sr_tile_size, predictor.options.sr_tile_overlap) == (512, 32)
    tiled = load_predictor("face-enhancement", directory, workers,
                           config=ModelConfig(device="cpu", options={"sr_tile_size": 16, "sr_tile_overlap": 16}))
    rgb = picture(4, 45, 37)
    sr = predictor.replicas.on(CPU)["sr"]
    assert sr.conv_first.weight.is_contiguous(memory_format=torch.channels_last)  # NHWC weights (oneDNN)
    # upstream's network as upstream lays it out
    expected = upstream_sr(copy.deepcopy(sr).to(memory_format=torch.contiguous_format), rgb)
    calls: list[int] = []
    hook = tiled.replicas.on(CPU)["sr"].register_forward_pre_hook(lambda *_: calls.append(1))
    with torch.inference_mode():
        ours = tiled._super_resolve(tiled.replicas.on(CPU), CPU, rgb)
    hook.remove()
    assert len(calls) == 9  # 46 x 38 padded: 3 x 3 tiles of 16
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1
    with pytest.raises(ValueError):
        FaceEnhancementPredictor.Options.model_validate({"sr_tile_size": 15})
