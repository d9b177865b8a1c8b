"""Which predictor serves which directory, and with what configuration.

A model repository holds one subdirectory per model, named after the model. The predictor class is
chosen by the optional ``predictor.json`` in the directory (``{"predictor": "general-recognition"}``)
or else by the directory's name. ``"predictor"`` may also name a class of your own,
``"package.module:ClassName"`` (importable by the server, a subclass of `Predictor`).
``predictor.json`` may also override batching and device and carry the model's typed ``options`` (its
class's `Options`; `predictors.settings` has the schema and the precedence)::

    {"predictor": "face-enhancement", "device": "cpu", "precision": "fp32", "max_batch_size": 4, "max_latency_ms": 10,
     "max_queue": 32, "max_queue_delay_ms": 2000, "options": {"max_faces_per_forward": 8}, "demo_weights": false}
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from predictors.models.base import Predictor
from predictors.models.catalog import MODELS
from predictors.settings import ModelConfig, PredictorFile, Settings, model_config

#: predictor name -> "module:Class" (from the one registration per model, `models/catalog.py`)
PREDICTOR_CLASSES = {model.name: model.predictor_class for model in MODELS}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    directory: Path
    predictor: str
    config: ModelConfig


class ModelSetupError(ValueError):
    """The model repository or a model directory is not usable; raised at start-up, never per request."""


def predictor_class(predictor: str) -> type[Predictor[Any, Any]]:
    """The class serving `predictor`: a built-in predictor's name or ``package.module:ClassName``."""
    if predictor in PREDICTOR_CLASSES:
        return _import_class(PREDICTOR_CLASSES[predictor])
    if ":" not in predictor:
        raise ModelSetupError(
            f"unknown predictor {predictor!r}; known: {sorted(PREDICTOR_CLASSES)}, or a class of your own "
            "as 'package.module:ClassName'"
        )
    found = _import_class(predictor)
    if not (isinstance(found, type) and issubclass(found, Predictor)):
        raise ModelSetupError(
            f"predictor {predictor!r} is not a subclass of {Predictor.__module__}.Predictor"
        )
    return found


def _import_class(reference: str) -> Any:
    module_name, _, class_name = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - whatever a module raises on import, the answer is the same
        raise ModelSetupError(
            f"predictor {reference!r}: cannot import module {module_name!r}: {type(error).__name__}: {error}"
        ) from None
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ModelSetupError(f"predictor {reference!r}: module {module_name!r} has no {class_name!r}") from None


def discover(settings: Settings) -> list[ModelEntry]:
    """The models to serve: `--model-dir` pairs, plus the repository's subdirectories (filtered by --models)."""
    directories: dict[str, Path] = {}
    if settings.model_repository is not None:
        root = settings.model_repository.resolve()
        if not root.is_dir():
            raise ModelSetupError(f"model repository {root} is not a directory")
        for child in sorted(root.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                directories[child.name] = child
        if settings.models:
            missing = set(settings.models) - set(directories)
            if missing:
                raise ModelSetupError(f"--models names {sorted(missing)} which are not in {root}")
            directories = {name: directories[name] for name in settings.models}
    for name, path in settings.model_dirs.items():
        directories[name] = path.resolve()
    if not directories:
        raise ModelSetupError("no models to serve: give --model-repository DIR or --model-dir NAME=PATH")
    return [model_entry(name, path, settings) for name, path in directories.items()]


def model_entry(name: str, directory: Path, settings: Settings) -> ModelEntry:
    if not directory.is_dir():
        raise ModelSetupError(f"model '{name}': {directory} is not a directory")
    overrides = read_predictor_file(directory)
    if overrides.predictor is None and name not in PREDICTOR_CLASSES:
        raise ModelSetupError(
            f"model '{name}': cannot tell which predictor serves {directory}; name the directory after one "
            f"of {sorted(PREDICTOR_CLASSES)} or put {{\"predictor\": ...}} in its predictor.json"
        )
    predictor = overrides.predictor or name
    try:
        cls = predictor_class(predictor)  # a custom class is imported and checked now, before any port is bound
    except ModelSetupError as error:
        raise ModelSetupError(f"model '{name}': {error}") from None
    try:
        options = cls.Options.model_validate(overrides.options)
    except ValidationError as error:
        raise ModelSetupError(f"model '{name}': {directory / 'predictor.json'} has invalid options: "
                              f"{error}") from None
    config = model_config(settings, overrides, options)
    return ModelEntry(name, directory, predictor, config)


def read_predictor_file(directory: Path) -> PredictorFile:
    path = directory / "predictor.json"
    if not path.exists():
        return PredictorFile()
    try:
        return PredictorFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError) as error:
        raise ModelSetupError(f"{path} is not valid: {error}") from None
