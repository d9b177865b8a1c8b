"""GPEN face enhancement: parity with ModelScope's own pipeline on generated directories, batching,
parameters, errors, colour order and the quality score.

Two demo directories of the real architectures: `one-face` (crafted detector: exactly one face per
image, crafted EQFace nets: the face passes the quality and identity checks) and `none` (the detector
never finds a face). A face costs one 512 px GPEN pass (~5-8 s on this CPU), so face images are 16 px.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from prometheus_client import CollectorRegistry

from predictors.device import CPU
from predictors.errors import FaceNotFound, ImageTooLarge, InvalidImage, InvalidInput
from predictors.kserve_compat import metric_value
from predictors.models.base import ModelConfig
from predictors.models.face_enhancement import demo
from predictors.models.face_enhancement.predictor import (
    FaceEnhancementPredictor,
    prior_boxes,
    sr_output_size,
    ssim_score,
)
from predictors.runtime import ModelRuntime
from predictors.telemetry.metrics import Metrics
from tests.conftest import sample_image

FACE_IMAGE_A = sample_image(11, (16, 16))
FACE_IMAGE_B = sample_image(12, (16, 16))


def rgb_noise(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def one_face_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo.write(tmp_path_factory.mktemp("gpen-one-face"), seed=1)


@pytest.fixture(scope="module")
def no_face_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo.write(tmp_path_factory.mktemp("gpen-no-face"), seed=2, detector="none")


@pytest.fixture(scope="module")
def workers():
    pool = ThreadPoolExecutor(max_workers=2)
    yield pool
    pool.shutdown()


def load_runtime(directory: Path, workers, **options: Any) -> ModelRuntime[Any, Any]:
    predictor = FaceEnhancementPredictor("face-enhancement", directory, ModelConfig(device="cpu", options=options))
    runtime = ModelRuntime(predictor, Metrics(CollectorRegistry()), workers)
    runtime.load()
    return runtime


def load(directory: Path, workers, **options: Any) -> FaceEnhancementPredictor:
    return load_runtime(directory, workers, **options).predictor  # type: ignore[return-value]


@pytest.fixture(scope="module")
def one_face(one_face_dir: Path, workers) -> FaceEnhancementPredictor:
    return load(one_face_dir, workers, max_faces_per_forward=2)


@pytest.fixture(scope="module")
def no_face(no_face_dir: Path, workers) -> FaceEnhancementPredictor:
    return load(no_face_dir, workers)


def upstream_pipeline(directory: Path):
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    return pipeline(Tasks.image_portrait_enhancement, model=str(directory))


@pytest.fixture(scope="module")
def no_face_upstream(no_face_dir: Path):
    return upstream_pipeline(no_face_dir)


def run(predictor: FaceEnhancementPredictor, images: list[Image.Image], **parameters: Any):
    params = predictor.parse_parameters({"output_format": "png", **parameters})
    prepared = [predictor.prepare({"image": image}, params) for image in images]
    with torch.inference_mode():
        raw = predictor.forward(prepared, CPU)
    results = [predictor.finish(p, r, params) for p, r in zip(prepared, raw, strict=True)]
    return results


def decoded_rgb(result: dict[str, Any]) -> np.ndarray:
    image = Image.open(io.BytesIO(result["image"].data))
    assert image.size == (result["width"], result["height"])
    return np.asarray(image.convert("RGB"))


def grey_level_differences(ours_rgb: np.ndarray, upstream_bgr: np.ndarray) -> np.ndarray:
    assert ours_rgb.shape == upstream_bgr.shape
    return np.abs(ours_rgb.astype(np.int16) - upstream_bgr[..., ::-1].astype(np.int16))


# ---- parity with ModelScope's pipeline ---------------------------------------------------------


@pytest.mark.parametrize("size", [(24, 20), (25, 19)], ids=["even", "odd"])
def test_no_face_path_matches_upstream_pipeline(no_face_upstream, no_face, size) -> None:
    image = rgb_noise(sum(size), size)
    expected_bgr = no_face_upstream(image)["output_img"]
    (result,) = run(no_face, [image], require_face=False)
    diff = grey_level_differences(decoded_rgb(result), expected_bgr)
    print(f"no-face parity {size}: max {diff.max()}, p99 {np.percentile(diff, 99)}")
    assert diff.max() <= 1
    assert result["faces"] == 0
    # upstream's own x2 size: odd sides come back as 2n+1
    assert (result["width"], result["height"]) == sr_output_size(*size) == expected_bgr.shape[1::-1]
    assert expected_bgr.std() > 5  # a real picture, not a constant


def test_no_face_path_without_upscale_matches_upstream(no_face_upstream, no_face) -> None:
    image = rgb_noise(5, (21, 17))
    no_face_upstream.use_sr = False
    try:
        expected_bgr = no_face_upstream(image)["output_img"]
    finally:
        no_face_upstream.use_sr = True
    (result,) = run(no_face, [image], require_face=False, upscale=False)
    assert grey_level_differences(decoded_rgb(result), expected_bgr).max() == 0
    # no face and no SR: the picture comes back unchanged, in RGB (no colour swap leaks)
    assert np.array_equal(decoded_rgb(result), np.asarray(image))
    assert result["quality_score"] == pytest.approx(1.0)
    assert result["needs_review"] is False


def run_keeping_raw(predictor: FaceEnhancementPredictor, image: Image.Image):
    params = predictor.parse_parameters({"output_format": "png"})
    prepared = predictor.prepare({"image": image}, params)
    with torch.inference_mode():
        (raw,) = predictor.forward([prepared], CPU)
    return prepared, raw, predictor.finish(prepared, raw, params)


@pytest.fixture(scope="module")
def single_runs(one_face) -> dict[str, tuple[Any, Any, dict[str, Any]]]:
    """Each face image run alone through prepare/forward/finish (shared by the parity and batching tests)."""
    return {
        name: run_keeping_raw(one_face, image) for name, image in (("A", FACE_IMAGE_A), ("B", FACE_IMAGE_B))
    }


def test_one_face_path_matches_upstream_pipeline(one_face_dir: Path, one_face, single_runs) -> None:
    pipeline = upstream_pipeline(one_face_dir)
    detect = pipeline.face_detector.detect
    detections = []

    def counting_detect(img):
        boxes, landmarks = detect(img)
        detections.append(boxes)
        return boxes, landmarks

    pipeline.face_detector.detect = counting_detect
    enhanced = []
    enhance = pipeline.enhance_face
    pipeline.enhance_face = lambda face: enhanced.append(enhance(face)) or enhanced[-1]
    expected_bgr = pipeline(FACE_IMAGE_A)["output_img"]
    assert len(detections) == 1 and len(detections[0]) == 1 and len(enhanced) == 1  # upstream: one face

    prepared, raw, result = single_runs["A"]
    assert result["faces"] == 1
    diff = grey_level_differences(decoded_rgb(result), expected_bgr)
    print(f"one-face parity: max {diff.max()}, p99 {np.percentile(diff, 99)}, mean {diff.mean():.4f}")
    assert np.percentile(diff, 99) <= 1
    assert diff.max() <= 3
    # the same enhanced face as upstream's generator produced
    face_diff = np.abs(raw.faces[0].enhanced_bgr.astype(int) - enhanced[0].astype(int))
    print(f"enhanced face: max {face_diff.max()}, p99 {np.percentile(face_diff, 99)}")
    assert np.percentile(face_diff, 99) <= 1

    # the face really was pasted: without it the output is the plain super-resolved background
    raw_without_face = type(raw)(faces=[], background_bgr=raw.background_bgr)
    plain_bgr, pasted = one_face.compose(prepared, raw_without_face)
    assert pasted == 0
    assert grey_level_differences(decoded_rgb(result), plain_bgr).max() > 10


# ---- batching ----------------------------------------------------------------------------------


def test_batched_faces_equal_one_by_one(one_face, single_runs) -> None:
    started = time.perf_counter()
    batched = run(one_face, [FACE_IMAGE_A, FACE_IMAGE_B])
    print(f"batch of 2 faces (one GPEN forward): {time.perf_counter() - started:.1f} s")
    for name, result in zip("AB", batched, strict=True):
        single = single_runs[name][2]
        assert result["faces"] == single["faces"] == 1
        diff = np.abs(decoded_rgb(result).astype(int) - decoded_rgb(single).astype(int))
        assert diff.max() <= 1, name
        assert result["quality_score"] == pytest.approx(single["quality_score"], abs=1e-3)
    assert not np.array_equal(decoded_rgb(batched[0]), decoded_rgb(batched[1]))


def test_forward_chunks_faces_by_max_faces_per_forward(one_face, monkeypatch) -> None:
    """The networks are stubbed (this is about grouping): 5 images with one face each."""
    calls = []

    def enhance(modules, device, faces):
        calls.append(len(faces))
        return [np.zeros((one_face.size, one_face.size, 3), np.uint8) for _ in faces]

    def quality(modules, device, faces):
        return np.ones(len(faces), np.float32), np.ones((len(faces), 512), np.float32)

    monkeypatch.setattr(one_face, "_enhance", enhance)
    monkeypatch.setattr(one_face, "_face_quality", quality)
    params = one_face.parse_parameters({"upscale": False})  # no SR: 16 px is one stride-32 cell, one face
    prepared = [one_face.prepare({"image": image}, params) for image in [FACE_IMAGE_A] * 5]
    with torch.inference_mode():
        raw = one_face.forward(prepared, CPU)
    assert calls == [2, 2, 1]  # max_faces_per_forward=2 across the 5 images of the batch
    assert [len(r.faces) for r in raw] == [1] * 5


# ---- errors and parameters ---------------------------------------------------------------------


def test_no_face_raises_face_not_found_in_prepare(no_face) -> None:
    with pytest.raises(FaceNotFound) as error:
        no_face.prepare({"image": rgb_noise(1, (32, 32))}, no_face.parse_parameters({}))
    assert error.value.code == "FACE_NOT_FOUND" and error.value.status == 422


def test_longest_side_limit_is_checked_before_detection(no_face, monkeypatch) -> None:
    monkeypatch.setattr(no_face, "_detect", lambda *a: pytest.fail("detector ran"))
    params = no_face.parse_parameters({"require_face": False})
    for size in [(2100, 10), (10, 2001)]:
        with pytest.raises(ImageTooLarge) as error:
            no_face.prepare({"image": Image.new("RGB", size)}, params)
        assert error.value.status == 413 and error.value.code == "IMAGE_TOO_LARGE"
    assert no_face.max_image_side == 2000


def test_max_image_side_option(no_face_dir: Path, workers) -> None:
    runtime = load_runtime(no_face_dir, workers, max_image_side=20, review_threshold=0.9)
    predictor = runtime.predictor
    params = predictor.parse_parameters({"require_face": False})
    with pytest.raises(ImageTooLarge):
        predictor.prepare({"image": Image.new("RGB", (21, 8))}, params)
    # through the runtime, which counts the flagged results of requests
    picture = io.BytesIO()
    Image.new("RGB", (20, 8), (200, 10, 10)).save(picture, "PNG")
    (result,) = asyncio.run(runtime.infer([{"image": picture.getvalue()}],
                                          {"require_face": False, "output_format": "png"}, None))
    assert (result["width"], result["height"]) == (40, 16)
    # random SR weights do not keep the picture: flagged and counted
    assert result["needs_review"] is (result["quality_score"] < 0.9)
    flagged = metric_value(runtime.metrics.review_flags.labels("face-enhancement"))
    assert flagged == (1.0 if result["needs_review"] else 0.0)


def test_too_small_image_is_invalid(no_face) -> None:
    with pytest.raises(InvalidImage):
        no_face.prepare(
            {"image": Image.new("RGB", (1, 5))}, no_face.parse_parameters({"require_face": False})
        )


@pytest.mark.parametrize(
    "parameters",
    [
        {"output_format": "gif"},
        {"jpeg_quality": 0},
        {"jpeg_quality": 101},
        {"require_face": "maybe"},
        {"upscale": [1]},
        {"unknown": 1},
    ],
)
def test_invalid_parameters_are_rejected(no_face, parameters) -> None:
    with pytest.raises(InvalidInput):
        no_face.parse_parameters(parameters)


def test_defaults(no_face) -> None:
    params = no_face.parse_parameters({})
    assert (params.output_format, params.jpeg_quality, params.require_face, params.upscale) == (
        "jpeg",
        95,
        True,
        True,
    )
    assert no_face.size == 512 and no_face.max_faces_per_forward == 4 and no_face.review_threshold == 0.5


def test_jpeg_and_png_outputs_have_the_stated_size(no_face) -> None:
    image = rgb_noise(9, (30, 14))
    for fmt, magic in (("jpeg", b"\xff\xd8"), ("png", b"\x89PNG")):
        (result,) = run(no_face, [image], require_face=False, output_format=fmt, jpeg_quality=80)
        assert result["image"].data.startswith(magic) and result["image"].format == fmt
        assert (
            Image.open(io.BytesIO(result["image"].data)).size
            == (60, 28)
            == (result["width"], result["height"])
        )
        assert 0.0 <= result["quality_score"] <= 1.0


# ---- the quality score -------------------------------------------------------------------------


def test_ssim_score_bounds() -> None:
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    assert ssim_score(picture, picture) == pytest.approx(1.0)
    assert ssim_score(picture, 255 - picture) == 0.0  # anti-correlated: clipped at 0
    noisy = np.clip(picture.astype(int) + rng.integers(-20, 21, picture.shape), 0, 255).astype(np.uint8)
    assert 0.5 < ssim_score(picture, noisy) < 1.0
    tiny = picture[:4, :5]
    assert ssim_score(tiny, tiny) == pytest.approx(1.0)  # below the 7x7 window: one global window
    assert 0.0 <= ssim_score(tiny, noisy[:4, :5]) < 1.0


# ---- the -hires variant ------------------------------------------------------------------------


def test_hires_directory_loads_the_1024_generator(tmp_path: Path, workers) -> None:
    directory = demo.write(tmp_path / "cv_gpen_image-portrait-enhancement-hires", detector="none", size=1024)
    predictor = load(directory, workers)
    assert predictor.size == 1024
    generator = predictor.replicas.on(CPU)["generator"]
    assert generator.log_size == 10
    (result,) = run(predictor, [rgb_noise(4, (12, 10))], require_face=False)
    assert (result["width"], result["height"]) == (24, 20)


@pytest.mark.parametrize("size", [(2, 2), (16, 16), (333, 517), (750, 1000), (1500, 1001)])
def test_prior_boxes_equal_upstreams_loop(size: tuple[int, int]) -> None:
    from modelscope.models.cv.image_portrait_enhancement.retinaface.detection import cfg_re50
    from modelscope.models.cv.image_portrait_enhancement.retinaface.utils import PriorBox

    assert torch.equal(prior_boxes(cfg_re50, *size), PriorBox(cfg_re50, image_size=size).forward())


def test_detection_runs_on_the_device_thread_with_cached_priors(no_face, monkeypatch) -> None:
    threads: list[str] = []
    detect = no_face._detect

    def recording_detect(modules, device, img_bgr):
        threads.append(threading.current_thread().name)
        return detect(modules, device, img_bgr)

    monkeypatch.setattr(no_face, "_detect", recording_detect)
    params = no_face.parse_parameters({"require_face": False, "upscale": False})
    before = no_face._prior_boxes.cache_info()
    for seed in (1, 2):  # same size twice: the second image reuses the first one's prior boxes
        no_face.prepare({"image": rgb_noise(seed, (45, 37))}, params)
    after = no_face._prior_boxes.cache_info()
    assert len(threads) == 2 and all(name.startswith("torch-cpu") for name in threads)
    assert threading.current_thread().name not in threads
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
