"""One registration per model: the registry, demo writers and hub ids agree with the classes, and serving
code never imports the demo package."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from predictors.models.catalog import HUB_MODELS, MODELS, Registration
from predictors.models.registry import PREDICTOR_CLASSES, predictor_class


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_each_registration_names_its_class_and_demo_writer(model: Registration) -> None:
    assert predictor_class(model.name).predictor_name == model.name
    module, _, function = model.demo_writer.partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_the_tables_are_derived_from_the_registrations() -> None:
    from predictors.cli import build_parser
    from predictors.models.demo import DEMO_WRITERS

    names = [model.name for model in MODELS]
    assert list(PREDICTOR_CLASSES) == list(DEMO_WRITERS) == names
    assert set(HUB_MODELS) >= {"general-recognition", "face-enhancement", "visual-entailment"}
    args = build_parser().parse_args(["download", "face-enhancement-hires", "/tmp/x"])
    assert HUB_MODELS[args.name] == "damo/cv_gpen_image-portrait-enhancement-hires"


def test_serving_code_never_imports_the_demo_package() -> None:
    code = ("import sys, importlib\n"
            "import predictors.server.app, predictors.models.registry as r\n"
            "[r.predictor_class(name) for name in r.PREDICTOR_CLASSES]\n"
            "print(sorted(m for m in sys.modules if m.startswith('predictors.models.demo')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == "[]"


def test_the_cli_imports_no_torch_for_status_and_infer() -> None:
    done = subprocess.run([sys.executable, "-c", "import sys, predictors.cli; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"


def test_demo_writers_import_no_kserve() -> None:
    """The integration tests write demo directories in their own process, where KServe must not be imported
    (its protobufs clash with tritonclient's): a model's layout (`models/<model>/layout.py`) and its
    demo writer import no serving code."""
    writers = "; ".join(f"import {m.demo_writer.partition(':')[0]}" for m in MODELS)
    code = f"import sys; {writers}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'kserve'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == "[]"
