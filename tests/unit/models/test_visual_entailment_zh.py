"""The Chinese OFA layout (``language: zh``: vocab.txt, OFATokenizerZH, Chinese answers) against ModelScope's
own pipeline, with the answer mapping taken from the directory's predictor.json."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from predictors.device import CPU
from predictors.models.base import ModelConfig
from predictors.models.registry import read_predictor_file
from predictors.models.visual_entailment import demo
from predictors.models.visual_entailment.predictor import CLASSES
from tests.conftest import sample_image
from tests.unit.models.conftest import load_predictor

PAIRS = [
    (sample_image(40), "一个男人", None),
    (sample_image(41, (240, 320)), "猫在图片上", None),
    (sample_image(42, (300, 200)), "狗", "一个女人和狗在街上"),
    (sample_image(43), "有两个人坐在车里吗", "红色的车"),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo.write(tmp_path_factory.mktemp("visual-entailment-zh") / "model", seed=1, language="zh",
                      patch_image_size=256)


def test_chinese_variant_matches_modelscope_pipeline(model_dir: Path, workers) -> None:
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    options = read_predictor_file(model_dir).options
    assert options["answer_classes"] == demo.ANSWER_CLASSES_ZH
    predictor = load_predictor("visual-entailment", model_dir, workers,
                               config=ModelConfig(device="cpu", options=options))
    assert predictor.tokenizer.__class__.__name__ == "OFATokenizerZH"
    params = predictor.parse_parameters({})
    prepared = []
    for image, hypothesis, premise in PAIRS:
        item = {"image": image, "hypothesis": hypothesis}
        if premise is not None:
            item["premise"] = premise
        prepared.append(predictor.prepare(item, params))
    with torch.inference_mode():
        raw = predictor.forward(prepared, CPU)
    upstream = pipeline(Tasks.visual_entailment, model=str(model_dir), device="cpu")
    for (image, hypothesis, premise), p, r in zip(PAIRS, prepared, raw, strict=True):
        result = predictor.finish(p, r, params)
        data = {"image": image, "text": hypothesis, **({"text2": premise} if premise else {})}
        expected = upstream(data)
        assert result["label"] == demo.ANSWER_CLASSES_ZH[expected["labels"]]
        assert result["scores"][CLASSES.index(result["label"])] == pytest.approx(expected["scores"], rel=1e-4)
        # the Chinese text reaches the model (not all <unk>)
        assert hypothesis[0] in predictor.tokenizer.decode(p.source)
