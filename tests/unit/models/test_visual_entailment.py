"""OFA visual entailment: parity with ModelScope's own pipeline, batching, the answer mapping, demo weights.

Everything runs on a generated tiny OFA directory (real architecture, random weights, generated vocabulary).
The OFA extra packages (fairseq-fixed, ...) are required: without them these tests fail, they never skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from prometheus_client import CollectorRegistry

from predictors.codecs import v1
from predictors.dataplane.kserve_model import KServeModel
from predictors.device import CPU
from predictors.models.base import ModelConfig
from predictors.models.visual_entailment import demo
from predictors.models.visual_entailment.predictor import CLASSES
from predictors.runtime import ModelRuntime
from predictors.telemetry.metrics import Metrics
from tests.conftest import sample_image
from tests.unit.models.conftest import load_predictor

ANSWER_TO_CLASS = {"yes": "entailment", "no": "contradiction", "maybe": "neutral"}
SIZES = [(320, 240), (240, 320), (256, 256), (500, 300), (224, 224), (300, 500), (640, 480), (200, 260)]
HYPOTHESES = [
    "a man is playing with a ball",
    "two dogs",
    "The woman, sitting on a red car in the street, is reading a very long newspaper about nothing.",
    "cat",
    "there are people standing on the street and a blue car - with a green roof/door",
    "A photo of the sea at night!",
    "nobody is here",
    "the picture shows   two people sitting  on a bench",
]
PREMISES = [
    None,
    "a dog runs on the grass",
    None,
    "an old man with a hat is sitting next to a cat on a sofa in a room with many books",
    None,
    "a picture",
    "people are sitting in a car",
    None,
]
#: 16 pairs: every hypothesis with and without its premise (or another one)
PAIRS = [
    (sample_image(seed, SIZES[seed % len(SIZES)]), hypothesis, premise)
    for seed, (hypothesis, premise) in enumerate(
        list(zip(HYPOTHESES, PREMISES, strict=True))
        + list(zip(HYPOTHESES, [None if p else "a man and a woman on a street" for p in PREMISES],
                   strict=True))
    )
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 256 px instead of the published 480 keeps the ResNet stem cheap; the code path is the same
    return demo.write(tmp_path_factory.mktemp("visual-entailment") / "model", seed=1, patch_image_size=256)


@pytest.fixture(scope="module")
def upstream(model_dir: Path):
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    return pipeline(Tasks.visual_entailment, model=str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def predictor(model_dir: Path, workers):
    return load_predictor("visual-entailment", model_dir, workers)


def item(image, hypothesis, premise=None) -> dict:
    value = {"image": image, "hypothesis": hypothesis}
    if premise is not None:
        value["premise"] = premise
    return value


def run(predictor, pairs):
    params = predictor.parse_parameters({})
    prepared = [predictor.prepare(item(*pair), params) for pair in pairs]
    with torch.inference_mode():
        raw = predictor.forward(prepared, CPU)
    return prepared, raw, [predictor.finish(p, r, params) for p, r in zip(prepared, raw, strict=True)]


@pytest.fixture(scope="module")
def batched(predictor):
    """All pairs in one batched forward pass (mixed text lengths, with and without premise)."""
    return run(predictor, PAIRS)


def upstream_input(image, hypothesis, premise=None) -> dict:
    data = {"image": image, "text": hypothesis}
    if premise is not None:
        data["text2"] = premise
    return data


def test_labels_and_scores_match_modelscope_pipeline(batched, upstream) -> None:
    _, raw, results = batched
    labels = []
    for (image, hypothesis, premise), result in zip(PAIRS, results, strict=True):
        expected = upstream(upstream_input(image, hypothesis, premise))
        assert result["label"] == ANSWER_TO_CLASS[expected["labels"]], (hypothesis, premise)
        score = result["scores"][CLASSES.index(result["label"])]
        assert score == pytest.approx(expected["scores"], rel=1e-4, abs=1e-5)
        assert score == max(result["scores"])
        labels.append(result["label"])
    assert len(PAIRS) >= 12
    assert {p is None for _, _, p in PAIRS} == {True, False}  # premise and no-premise cases
    # the demo weights really make the answer depend on the input: not one constant label
    assert len(set(labels)) >= 2, labels
    assert len({round(max(r["scores"]), 6) for r in results}) == len(results)


def test_batched_equals_one_by_one_with_mixed_lengths(predictor, batched) -> None:
    prepared, raw_batch, results = batched
    lengths = {len(p.source) for p in prepared}
    assert len(lengths) >= 6, lengths  # really mixed text lengths, so the batch is padded
    for pair, raw, result in zip(PAIRS, raw_batch, results, strict=True):
        _, (raw_single,), (single,) = run(predictor, [pair])
        assert single["label"] == result["label"]
        assert torch.allclose(raw.log_scores, raw_single.log_scores, atol=1e-5, rtol=0)
        for a, b in zip(single["scores"], result["scores"], strict=True):
            assert a == pytest.approx(b, abs=1e-5)


def test_batch_order_does_not_matter(predictor, batched) -> None:
    _, _, forward_order = batched
    _, _, reverse_order = run(predictor, PAIRS[::-1])
    for a, b in zip(forward_order, reverse_order[::-1], strict=True):
        assert a["label"] == b["label"]
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)


def test_scores_are_a_distribution_in_the_stated_order(predictor, batched) -> None:
    _, raw, results = batched
    assert CLASSES == ("entailment", "contradiction", "neutral")
    for answer_scores, result in zip(raw, results, strict=True):
        assert len(result["scores"]) == 3
        assert sum(result["scores"]) == pytest.approx(1.0, abs=1e-5)
        by_answer = dict(zip(predictor.answers, answer_scores.probabilities.tolist(), strict=True))
        assert result["scores"] == pytest.approx(
            [by_answer["yes"], by_answer["no"], by_answer["maybe"]], abs=1e-7
        )
        assert result["label"] == CLASSES[max(range(3), key=lambda i: result["scores"][i])]


def test_premise_goes_into_upstreams_prompt(predictor) -> None:
    image = sample_image(1)
    params = predictor.parse_parameters({})
    without = predictor.prepare(item(image, "a dog"), params)
    with_premise = predictor.prepare(item(image, "a dog", "a cat on a sofa"), params)
    text = predictor.tokenizer.decode(with_premise.source[1:-1])
    assert "can image and text1" in text and "a cat on a sofa" in text and "a dog" in text
    assert "does the image describe" in predictor.tokenizer.decode(without.source[1:-1])
    # prev_output: the decoder prompt is the source without its eos
    assert torch.equal(with_premise.decoder_prompt, with_premise.source[:-1])


def test_outputs_metadata_and_v1_encoding(predictor, batched, workers) -> None:
    served = KServeModel(ModelRuntime(predictor, Metrics(CollectorRegistry()), workers))  # what KServe asks
    by_name = {spec["name"]: spec for spec in served.get_output_types()}
    assert by_name["label"] == {"name": "label", "datatype": "BYTES", "shape": [-1]}
    assert by_name["scores"] == {"name": "scores", "datatype": "FP32", "shape": [-1, 3]}
    assert [spec["name"] for spec in served.get_input_types()] == ["image", "hypothesis", "premise"]
    _, _, results = batched
    predictions = v1.encode_response(results, predictor.outputs)["predictions"]
    for prediction, result in zip(predictions, results, strict=True):
        assert prediction["label"] == result["label"]
        assert prediction["scores"] == dict(zip(CLASSES, result["scores"], strict=True))
        assert list(prediction["scores"]) == list(CLASSES)


def test_custom_answer_mapping_and_bad_mapping(model_dir: Path, workers) -> None:
    swapped = {"yes": "contradiction", "no": "entailment", "maybe": "neutral"}
    model = load_predictor("visual-entailment", model_dir, workers,
                           config=ModelConfig(device="cpu", options={"answer_classes": swapped}))
    assert model.answer_classes == [swapped[a] for a in model.answers]
    with pytest.raises(ValueError, match="answer_classes"):
        load_predictor("visual-entailment", model_dir, workers,
                       config=ModelConfig(device="cpu", options={"answer_classes": {"yes": "entailment"}}))


def test_demo_directory_layout(model_dir: Path) -> None:
    vocab = json.loads((model_dir / "vocab.json").read_text())
    config = json.loads((model_dir / "config.json").read_text())
    configuration = json.loads((model_dir / "configuration.json").read_text())
    assert config["vocab_size"] == len(vocab) + 9192
    assert config["model_type"] == "ofa"
    assert [vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert vocab["<mask>"] == len(vocab) - 1
    assert {"Ġyes", "Ġno", "Ġmaybe"} <= set(vocab)
    merges = (model_dir / "merges.txt").read_text().split("\n")
    assert merges[0] == "#version: 0.2" and merges[-1] == ""
    assert configuration["task"] == "visual-entailment"
    assert configuration["model"]["prompt_type"] == "prev_output"
    assert json.loads((model_dir / "answer2label.json").read_text()) == {"no": 0, "yes": 1, "maybe": 2}
    assert json.loads((model_dir / "predictor.json").read_text())["demo_weights"] is True
    assert not any(key.endswith("rp_bucket") for key in torch.load(model_dir / "pytorch_model.bin"))


def test_demo_sizes_are_configurable(tmp_path: Path) -> None:
    directory = demo.write(tmp_path / "small", d_model=32, encoder_layers=2, patch_image_size=256)
    config = json.loads((directory / "config.json").read_text())
    configuration = json.loads((directory / "configuration.json").read_text())
    assert (config["d_model"], config["encoder_layers"]) == (32, 2)
    assert configuration["model"]["patch_image_size"] == 256


def test_make_demo_models_writes_the_directory(tmp_path: Path) -> None:
    from predictors.models.demo import DEMO_WRITERS, make_demo_repository

    assert DEMO_WRITERS["visual-entailment"] == "predictors.models.visual_entailment.demo:write"
    (directory,) = make_demo_repository(tmp_path, ["visual-entailment"])
    assert directory.name == "visual-entailment"
    assert (directory / "pytorch_model.bin").exists()
    assert json.loads((directory / "predictor.json").read_text())["predictor"] == "visual-entailment"
