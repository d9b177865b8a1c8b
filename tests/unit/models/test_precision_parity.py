"""Reduced precision keeps the answers: each model in bf16 (autocast, on the CPU) against itself in fp32.

What is compared, and why these tolerances. bf16 keeps 8 significant bits (relative rounding error up to
2^-9 ~ 0.2% per rounding); autocast rounds the inputs and weights of every matrix product and
convolution to bf16 and accumulates in fp32, so the error grows with depth but does not explode:

- classifiers: the top-1 label is identical on every test image (asserted), the top-1 logit within 3%
  relative, or 0.03 absolute for logits below 1 (a logit's rounding error scales with the terms summed
  into it, not with the sum), probabilities within 0.03 absolute;
- visual entailment (OFA encoder + decoder): the label is identical on every pair, every class
  probability within 0.03 absolute (measured up to 0.0096 on the demo model: 3x margin);
- face enhancement (EQFace, GPEN, RRDBNet): the same faces pasted, the output image within 6 grey levels
  everywhere and 1.5 on average (measured: at most 3, mean 0.6; a 0.4% error on a 0..255 output is ~1
  grey level per rounding that reaches the output), quality score within 0.01 (measured 0.0015).

A check that bf16 really ran (some score differs from fp32) keeps these tests from passing on a
precision setting that silently does nothing.

Each test runs twice: on this machine's CPU as torch reports it, and on a CPU without native bf16 stated
through the capability check (`predictors.precision.Bf16Support`). The real bf16 path runs only where the
CPU has native bf16 (AVX512_BF16 or AMX_BF16): emulated, it took 150x fp32's time and these tests ran for
up to 809 s. Where bf16 is not native the runtime serves fp32, and the test checks that instead: fp32 as
effective precision, the reason, and answers identical to the fp32 model's. The run's summary lists which
path each test took (`bf16 path` lines, from tests/conftest.py).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from predictors.device import CPU
from predictors.models.base import ModelConfig
from predictors.models.face_enhancement import demo as face_enhancement_demo
from predictors.models.general_recognition import demo as general_recognition_demo
from predictors.models.visual_entailment import demo as visual_entailment_demo
from predictors.precision import Bf16Support, read_bf16_support
from tests.conftest import BF16_PATH, sample_image
from tests.unit.models.conftest import load_runtime
from tests.unit.models.test_image_classification import write_dir

PROBABILITY_TOLERANCE = 0.03
TOP_LOGIT_TOLERANCE = 0.03
SIZES = [(320, 240), (240, 320), (256, 256), (500, 300), (224, 224), (300, 500), (640, 480), (200, 260)]


def run(runtime: Any, items: list[dict[str, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """What the device thread runs (the forward under the model's precision), then `finish`."""
    predictor = runtime.predictor
    params = predictor.parse_parameters({})
    prepared = [predictor.prepare(item, params) for item in items]
    with torch.inference_mode():
        raw = runtime.forward_in_precision(prepared, CPU)
    return raw, [predictor.finish(p, r, params) for p, r in zip(prepared, raw, strict=True)]


def without_native_bf16(device: Any) -> Bf16Support:
    return Bf16Support(False, "stated by the test: torch CPU capability AVX2, bf16 instructions none")


@pytest.fixture(params=["this-cpu", "cpu-without-native-bf16"])
def bf16_support(request: pytest.FixtureRequest, record_property: Any) -> Any:
    """The capability check the bf16 model is loaded with; the path it leads to goes into the report."""
    support = read_bf16_support if request.param == "this-cpu" else without_native_bf16
    facts = support(CPU)
    record_property(BF16_PATH, f"{'native bf16' if facts.native else 'fp32 fallback'} ({facts.facts})")
    return support


def pair(predictor: str, directory: Path, workers: Any, bf16_support: Any) -> dict[str, Any]:
    """The model loaded in fp32 and with precision bf16 (whatever that resolves to on `bf16_support`)."""
    return {
        "fp32": load_runtime(predictor, directory, workers, config=ModelConfig(device="cpu", precision="fp32")),
        "bf16": load_runtime(predictor, directory, workers, config=ModelConfig(device="cpu", precision="bf16"),
                             bf16_support=bf16_support),
    }


def runs_bf16(models: dict[str, Any]) -> bool:
    """Whether the bf16 model runs bf16; if not, that it says why and serves fp32."""
    resolved = models["bf16"].precision
    if resolved.effective == "bf16":
        return True
    assert resolved.effective == "fp32" and "has no native bf16" in resolved.reason
    return False


def assert_same_tensors(a: Any, b: Any) -> None:
    """Two raw results (dataclasses of tensors and numbers) field by field, exactly."""
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, other), name
        else:
            assert value == other, name


def check_classifier(models: dict[str, Any], images: list[Any]) -> None:
    items = [{"image": image} for image in images]
    (raw32, out32), (raw16, out16) = run(models["fp32"], items), run(models["bf16"], items)
    if not runs_bf16(models):
        assert out16 == out32
        for a, b in zip(raw32, raw16, strict=True):
            assert_same_tensors(a, b)
        return
    differs = False
    for a, b, ra, rb in zip(out32, out16, raw32, raw16, strict=True):
        assert a["labels"][0] == b["labels"][0]
        assert rb.top_logit == pytest.approx(ra.top_logit, rel=TOP_LOGIT_TOLERANCE, abs=TOP_LOGIT_TOLERANCE)
        top = {label: score for label, score in zip(a["labels"], a["scores"], strict=True)}
        for label, score in zip(b["labels"], b["scores"], strict=True):
            if label in top:
                assert score == pytest.approx(top[label], abs=PROBABILITY_TOLERANCE)
        differs |= ra.top_logit != rb.top_logit
    assert differs, "bf16 gave exactly the fp32 logits: autocast did not run"


def test_image_classification_bf16_keeps_labels(tmp_path: Path, workers, bf16_support) -> None:
    directory, _ = write_dir(tmp_path / "classifier", "export")
    check_classifier(pair("image-classification", directory, workers, bf16_support),
                     [sample_image(seed, size) for seed, size in enumerate(SIZES)])


def test_general_recognition_bf16_keeps_labels(tmp_path: Path, workers, bf16_support) -> None:
    directory = general_recognition_demo.write(tmp_path / "general-recognition", seed=3)
    check_classifier(pair("general-recognition", directory, workers, bf16_support),
                     [sample_image(seed, size) for seed, size in enumerate(SIZES[:3])])


def test_visual_entailment_bf16_keeps_labels(tmp_path: Path, workers, bf16_support) -> None:
    directory = visual_entailment_demo.write(tmp_path / "visual-entailment", seed=1, patch_image_size=256)
    models = pair("visual-entailment", directory, workers, bf16_support)
    hypotheses = ["a man is playing with a ball", "two dogs", "cat", "A photo of the sea at night!"]
    items = [{"image": sample_image(seed, SIZES[seed]), "hypothesis": text} for seed, text in enumerate(hypotheses)]
    (raw32, out32), (raw16, out16) = run(models["fp32"], items), run(models["bf16"], items)
    if not runs_bf16(models):
        assert out16 == out32
        for a, b in zip(raw32, raw16, strict=True):
            assert_same_tensors(a, b)
        return
    for a, b in zip(out32, out16, strict=True):
        assert a["label"] == b["label"]
        assert b["scores"] == pytest.approx(a["scores"], abs=PROBABILITY_TOLERANCE)
    assert any(not torch.equal(x.log_scores, y.log_scores) for x, y in zip(raw32, raw16, strict=True))


def test_face_enhancement_bf16_keeps_the_image(tmp_path: Path, workers, bf16_support) -> None:
    directory = face_enhancement_demo.write(tmp_path / "face-enhancement", seed=1)
    models = pair("face-enhancement", directory, workers, bf16_support)
    native = runs_bf16(models)
    items = [{"image": sample_image(seed, (16, 16))} for seed in (11, 12)]  # one face each (demo detector)

    def outputs(runtime: Any) -> list[tuple[np.ndarray, dict[str, Any]]]:
        model = runtime.predictor
        params = model.parse_parameters({"output_format": "png"})
        prepared = [model.prepare(item, params) for item in items]
        with torch.inference_mode():
            raw = runtime.forward_in_precision(prepared, CPU)
        results = [model.finish(p, r, params) for p, r in zip(prepared, raw, strict=True)]
        return [(np.asarray(Image.open(io.BytesIO(r["image"].data)).convert("RGB")).astype(int), r) for r in results]

    for (image32, result32), (image16, result16) in zip(outputs(models["fp32"]), outputs(models["bf16"]), strict=True):
        assert result32["faces"] == result16["faces"] == 1
        if not native:
            assert np.array_equal(image32, image16) and result16 == result32
            continue
        difference = np.abs(image32 - image16)
        assert difference.max() <= 6 and difference.mean() <= 1.5
        assert result16["quality_score"] == pytest.approx(result32["quality_score"], abs=0.01)
        assert difference.max() > 0, "bf16 gave exactly the fp32 image: autocast did not run"
