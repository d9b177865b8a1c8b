"""The `precision` setting and the GPU-path helpers that must be harmless on the CPU: autocast per
precision, fp16 refused off CUDA at start-up, pinned non-blocking copies, the cuDNN autotuner."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from bench.models import write_tiny
from predictors.cli import build_parser, settings_from_args
from predictors.device import (
    CPU,
    check_precision,
    enable_cudnn_autotuner,
    precision_context,
    stack_to_device,
    to_device,
)
from predictors.models.base import ModelConfig
from predictors.models.image_classification import ImageClassificationPredictor
from predictors.models.registry import ModelSetupError, model_entry
from predictors.runtime import ModelRuntime
from predictors.settings import Settings
from predictors.telemetry.metrics import Metrics

CUDA = torch.device("cuda", 0)  # only a device object: nothing here needs a GPU


def test_fp16_is_refused_off_cuda_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="fp16 needs a CUDA device but the model runs on cpu; use precision bf16"):
        check_precision(CPU, "fp16")
    with pytest.raises(ValueError, match="fp32, fp16 or bf16"):
        check_precision(CPU, "int8")
    for device, precision in ((CPU, "fp32"), (CPU, "bf16"), (CUDA, "fp16"), (CUDA, "bf16")):
        check_precision(device, precision)  # accepted


def test_precision_context_autocasts_only_for_reduced_precision() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with precision_context(CPU, "fp32"):
        assert torch.mm(a, b).dtype == torch.float32
    with precision_context(CPU, "bf16"):
        assert torch.mm(a, b).dtype == torch.bfloat16
    # fp16 can only reach the CPU as the CUDA out-of-memory fallback: it runs there in fp32
    with precision_context(CPU, "fp16"):
        assert torch.mm(a, b).dtype == torch.float32


def test_host_to_device_helpers_are_plain_copies_on_the_cpu() -> None:
    tensors = [torch.randn(3, 5, 5) for _ in range(4)]
    stacked = stack_to_device(tensors, CPU)
    assert torch.equal(stacked, torch.stack(tensors)) and not stacked.is_pinned()
    single = torch.randn(2, 3)
    assert to_device(single, CPU) is single  # no copy at all


def test_cudnn_autotuner_only_for_cuda() -> None:
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        enable_cudnn_autotuner(CPU)
        assert torch.backends.cudnn.benchmark is False
        enable_cudnn_autotuner(CUDA)
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = before


def test_precision_setting_env_flag_and_predictor_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().precision == "fp32"
    monkeypatch.setenv("PREDICTORS_PRECISION", "bf16")
    assert Settings().precision == "bf16"
    settings = settings_from_args(build_parser().parse_args(["serve", "--precision", "fp16"]))
    assert settings.precision == "fp16"  # the flag wins
    with pytest.raises(ValidationError):
        Settings(precision="fp8")

    directory = tmp_path / "classifier"
    write_tiny(directory)
    assert model_entry("m", directory, Settings(precision="bf16")).config.precision == "bf16"
    (directory / "predictor.json").write_text(json.dumps({"predictor": "image-classification", "precision": "fp32"}))
    assert model_entry("m", directory, Settings(precision="bf16")).config.precision == "fp32"  # per model wins
    (directory / "predictor.json").write_text(json.dumps({"predictor": "image-classification", "precision": "half"}))
    with pytest.raises(ModelSetupError, match="precision"):
        model_entry("m", directory, Settings())


def test_a_cpu_model_in_fp16_fails_at_start_up(tmp_path: Path) -> None:
    write_tiny(tmp_path / "tiny")
    with ThreadPoolExecutor(1) as workers:
        model = ModelRuntime(
            ImageClassificationPredictor("tiny", tmp_path / "tiny", ModelConfig(device="cpu", precision="fp16")),
            Metrics(CollectorRegistry()), workers,
        )
        with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
            model.load()
        assert not model.ready and "fp16" in (model.load_error or "")
