"""Parity with ModelScope's own GeneralRecognitionPipeline on generated checkpoints of the real architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from predictors.device import CPU
from predictors.models.general_recognition import demo
from predictors.models.general_recognition.predictor import read_labels
from tests.conftest import sample_image
from tests.unit.models.conftest import load_predictor

IMAGES = [sample_image(seed, size) for seed, size in enumerate(
    [(320, 240), (240, 320), (256, 256), (500, 300), (224, 224), (300, 500), (640, 480), (200, 260), (180, 180)])]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo.write(tmp_path_factory.mktemp("general-recognition"), seed=3)


@pytest.fixture(scope="module")
def upstream(model_dir: Path):
    from modelscope.pipelines.cv.general_recognition_pipeline import GeneralRecognitionPipeline

    return GeneralRecognitionPipeline(model=str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def predictor(model_dir: Path, workers):
    return load_predictor("general-recognition", model_dir, workers)


def run(predictor, images, top_k: int = 5):
    params = predictor.parse_parameters({"top_k": top_k})
    prepared = [predictor.prepare({"image": image}, params) for image in images]
    with torch.inference_mode():
        raw = predictor.forward(prepared, CPU)
    return raw, [predictor.finish(p, r, params) for p, r in zip(prepared, raw, strict=True)]


def test_top1_label_and_logit_match_upstream_on_many_images(predictor, upstream) -> None:
    raw, results = run(predictor, IMAGES)
    distinct = set()
    for image, topk, result in zip(IMAGES, raw, results, strict=True):
        expected = upstream(image)
        expected_label = expected["labels"][0].rstrip("\n")
        assert result["labels"][0] == expected_label
        assert topk.top_logit == pytest.approx(expected["scores"][0], rel=1e-4, abs=1e-3)
        distinct.add(topk.top_logit)
    assert len(distinct) == len(IMAGES)  # the logits really depend on the image


def test_batched_equals_one_by_one(predictor) -> None:
    raw_batch, batched = run(predictor, IMAGES)
    for image, topk, result in zip(IMAGES, raw_batch, batched, strict=True):
        raw_single, single = run(predictor, [image])
        assert single[0]["labels"] == result["labels"]
        assert single[0]["scores"] == pytest.approx(result["scores"], rel=1e-5, abs=1e-6)
        assert raw_single[0].top_logit == pytest.approx(topk.top_logit, rel=1e-5)


def test_crafted_checkpoint_decides_the_label(tmp_path: Path, workers) -> None:
    directory = demo.write(tmp_path / "crafted", seed=1, favoured_class=45468)
    predictor = load_predictor("general-recognition", directory, workers)
    _, results = run(predictor, IMAGES[:3], top_k=3)
    for result in results:
        assert result["labels"][0] == "演示类别45468"
        assert result["scores"][0] > 0.99
        assert len(result["labels"]) == len(result["scores"]) == 3


def test_scores_are_probabilities_sorted_descending(predictor) -> None:
    _, results = run(predictor, IMAGES[:2], top_k=10)
    for result in results:
        scores = result["scores"]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert len(set(result["labels"])) == 10


def test_labels_are_read_once_at_load(predictor, model_dir: Path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the label file was read on the request path")

    monkeypatch.setattr(Path, "read_text", fail)
    run(predictor, IMAGES[:1])


def test_label_file_format(tmp_path: Path) -> None:
    path = tmp_path / "meta_info.txt"
    path.write_text("0\t猫\n1\t狗 犬\n2\n", encoding="utf-8")
    assert read_labels(path) == ["猫", "狗 犬", "2"]


def test_short_label_file_is_refused(tmp_path: Path, model_dir: Path, workers) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("configuration.json", "pytorch_model.pt"):
        (broken / name).symlink_to(model_dir / name)
    (broken / "meta_info.txt").write_text("0\tonly one\n", encoding="utf-8")
    with pytest.raises(ValueError, match="meta_info.txt: has 1 lines"):
        load_predictor("general-recognition", broken, workers)
