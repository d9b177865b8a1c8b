import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from predictors.cli import build_parser, settings_from_args
from predictors.models.registry import ModelSetupError, PredictorFile, discover, predictor_class
from predictors.settings import Settings
from tests.support.faults import FAULTY_PREDICTOR


def make_repo(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
    return root


def test_repository_subdirectories_are_models(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "general-recognition", "image-classification", ".hidden")
    entries = discover(Settings(model_repository=repo))
    assert [(e.name, e.predictor) for e in entries] == [
        ("general-recognition", "general-recognition"), ("image-classification", "image-classification")]


def test_models_filter_and_unknown_names(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "general-recognition", "image-classification")
    assert [e.name for e in discover(Settings(model_repository=repo, models=("image-classification",)))] == [
        "image-classification"]
    with pytest.raises(ModelSetupError, match="face-enhancement"):
        discover(Settings(model_repository=repo, models=("face-enhancement",)))


def test_predictor_json_chooses_the_class_and_overrides_settings(tmp_path: Path) -> None:
    directory = tmp_path / "my-birds"
    directory.mkdir()
    (directory / "predictor.json").write_text(json.dumps({
        "predictor": "image-classification", "max_batch_size": 2, "max_latency_ms": 0, "device": "cpu",
        "max_image_side": 512}))
    (entry,) = discover(Settings(model_dirs={"birds": directory}, max_batch_size=16, max_queue=7))
    assert entry.name == "birds" and entry.predictor == "image-classification"
    assert entry.config.batching.max_batch_size == 2
    assert entry.config.batching.max_latency_ms == 0
    assert entry.config.batching.max_queue == 7
    assert entry.config.device == "cpu" and entry.config.image_limits.max_side == 512
    assert entry.config.options == predictor_class("image-classification").Options()


def test_flag_beats_env_and_predictor_json_beats_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The precedence `predictors.settings.model_config` documents, value by value."""
    directory = tmp_path / "image-classification"
    directory.mkdir()
    (directory / "predictor.json").write_text(json.dumps({"max_queue": 5, "max_queue_delay_ms": 0,
                                                          "precision": "bf16"}))
    monkeypatch.setenv("PREDICTORS_MAX_QUEUE", "11")
    monkeypatch.setenv("PREDICTORS_MAX_LATENCY_MS", "7")
    monkeypatch.setenv("PREDICTORS_MAX_QUEUE_DELAY_MS", "300")
    (entry,) = discover(Settings(model_repository=tmp_path, max_latency_ms=9))
    batching = entry.config.batching
    assert (batching.max_queue, batching.max_latency_ms, batching.max_queue_delay_ms) == (5, 9, 0)
    assert batching.max_batch_size == Settings.model_fields["max_batch_size"].default
    assert entry.config.precision == "bf16"


@pytest.mark.parametrize(("predictor", "options", "message"), [
    ("image-classification", {"top_k": 3}, "top_k"),
    ("face-enhancement", {"max_faces_per_forwrad": 8}, "max_faces_per_forwrad"),
    ("face-enhancement", {"max_faces_per_forward": "many"}, "max_faces_per_forward"),
    ("visual-entailment", {"answer_class": {}}, "answer_class"),
])
def test_a_mistyped_option_stops_start_up(tmp_path: Path, predictor: str, options: dict, message: str) -> None:
    directory = tmp_path / predictor
    directory.mkdir()
    (directory / "predictor.json").write_text(json.dumps({"options": options}))
    with pytest.raises(ModelSetupError, match=message):
        discover(Settings(model_repository=tmp_path))


def test_max_image_side_is_one_limit(tmp_path: Path) -> None:
    """predictor.json's max_image_side and face-enhancement's option of that name are the same limit."""
    for name, content in [("face-enhancement", {"options": {"max_image_side": 300}}),
                          ("image-classification", {"max_image_side": 300})]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "predictor.json").write_text(json.dumps(content))
    (tmp_path / "general-recognition").mkdir()
    sides = {e.name: e.config.image_limits.max_side for e in discover(Settings(model_repository=tmp_path))}
    assert sides == {"face-enhancement": 300, "image-classification": 300, "general-recognition": 0}


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid"), ('{"max_batch_size": 0}', "not valid"), ('{"batch": 4}', "not valid")],
)
def test_broken_predictor_json(tmp_path: Path, content: str, message: str) -> None:
    directory = tmp_path / "general-recognition"
    directory.mkdir()
    (directory / "predictor.json").write_text(content)
    with pytest.raises(ModelSetupError, match=message):
        discover(Settings(model_repository=tmp_path))


def test_directory_name_must_identify_a_predictor(tmp_path: Path) -> None:
    make_repo(tmp_path, "birds")
    with pytest.raises(ModelSetupError, match="cannot tell which predictor"):
        discover(Settings(model_repository=tmp_path))


def test_nothing_to_serve(tmp_path: Path) -> None:
    with pytest.raises(ModelSetupError, match="no models to serve"):
        discover(Settings())
    with pytest.raises(ModelSetupError, match="not a directory"):
        discover(Settings(model_dirs={"general-recognition": tmp_path / "missing"}))


def test_every_registered_predictor_class_imports() -> None:
    for name in ("general-recognition", "image-classification"):
        assert predictor_class(name).predictor_name == name
    with pytest.raises(ModelSetupError, match="unknown predictor"):
        predictor_class("speech")


def test_predictor_json_may_name_a_class_of_ones_own(tmp_path: Path) -> None:
    from tests.support.faulty_predictors import FaultyClassifier

    directory = tmp_path / "faulty"
    directory.mkdir()
    (directory / "predictor.json").write_text(json.dumps({"predictor": FAULTY_PREDICTOR}))
    (entry,) = discover(Settings(model_repository=tmp_path))
    assert entry.predictor == FAULTY_PREDICTOR
    assert predictor_class(entry.predictor) is FaultyClassifier


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("tests.support.no_such_module:Thing", "cannot import module 'tests.support.no_such_module'"),
        ("tests.support.faulty_predictors:NoSuchClass", "has no 'NoSuchClass'"),
        ("tests.support.faulty_predictors:InjectedFault", "is not a subclass of predictors.models.base"),
        ("tests.support.faults:FORWARD_RAISES", "is not a subclass"),
        ("faulty-classifier", "unknown predictor"),
    ],
)
def test_a_custom_predictor_that_cannot_serve_is_refused_at_discovery(tmp_path: Path, reference: str,
                                                                      message: str) -> None:
    directory = tmp_path / "faulty"
    directory.mkdir()
    (directory / "predictor.json").write_text(json.dumps({"predictor": reference}))
    with pytest.raises(ModelSetupError, match=message) as error:
        discover(Settings(model_repository=tmp_path))
    assert "model 'faulty'" in str(error.value)


def test_the_documented_predictor_json_example_is_valid() -> None:
    """docs/configuration.md's predictor.json example, exactly as written, is accepted by the loader's schema."""

    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = page[page.index("overrides settings for that model"):]
    example = re.search(r"```json\n(.*?)```", section, re.S)
    assert example is not None
    parsed = PredictorFile.model_validate(json.loads(example.group(1)))
    assert parsed.predictor == "image-classification"


def test_the_latency_target_comes_from_env_flag_or_predictor_json(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name, content in (("image-classification", {}), ("general-recognition", {"latency_target_ms": 250})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "predictor.json").write_text(json.dumps(content))
    assert Settings().latency_target_ms == 0  # off unless asked for
    monkeypatch.setenv("PREDICTORS_LATENCY_TARGET_MS", "900")
    assert Settings().latency_target_ms == 900
    args = build_parser().parse_args(["serve", "--model-repository", str(tmp_path), "--latency-target-ms", "1200"])
    entries = {entry.name: entry for entry in discover(settings_from_args(args))}
    assert entries["image-classification"].config.batching.latency_target_ms == 1200  # the flag beats the env
    assert entries["general-recognition"].config.batching.latency_target_ms == 250  # the model's own file wins
    with pytest.raises(ValidationError):
        Settings(latency_target_ms=-1)
