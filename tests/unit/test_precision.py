"""The `precision` setting and the GPU-path helpers that must be harmless on the CPU: autocast per
precision, fp16 refused off CUDA at start-up, bf16 served in fp32 where the device has no native bf16
(decided on the facts torch reports, and on facts a test states), pinned non-blocking copies, the cuDNN
autotuner."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from bench.models import write_tiny
from devtools.images import sample_image
from predictors.cli import build_parser, settings_from_args
from predictors.device import CPU, enable_cudnn_autotuner, stack_to_device, to_device
from predictors.models.base import ModelConfig
from predictors.models.image_classification.predictor import ImageClassificationPredictor
from predictors.models.registry import ModelSetupError, model_entry
from predictors.precision import (
    Bf16Support,
    ResolvedPrecision,
    autocast_to,
    cpu_bf16_support,
    read_cpu_bf16_support,
    resolve_precision,
)
from predictors.runtime import ModelRuntime
from predictors.settings import Settings
from predictors.telemetry.metrics import Metrics

CUDA = torch.device("cuda", 0)  # only a device object: nothing here needs a GPU


NATIVE = Bf16Support(True, "stated: native")
EMULATED = Bf16Support(False, "stated: torch CPU capability AVX2, bf16 instructions none")


def supports(cpu: Bf16Support, cuda: Bf16Support = NATIVE):
    return lambda device: cpu if device.type == "cpu" else cuda


def test_fp16_is_refused_off_cuda_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="fp16 needs a CUDA device but the model runs on cpu; use precision bf16"):
        resolve_precision("fp16", CPU, supports(NATIVE))
    with pytest.raises(ValueError, match="fp32, fp16 or bf16"):
        resolve_precision("int8", CPU, supports(NATIVE))
    assert resolve_precision("fp16", CUDA, supports(EMULATED)) == ResolvedPrecision("fp16", "fp16", "fp32")
    assert resolve_precision("fp32", CPU, supports(EMULATED)) == ResolvedPrecision("fp32", "fp32", "fp32")


def test_bf16_runs_where_it_is_native_and_fp32_elsewhere_with_the_reason() -> None:
    assert resolve_precision("bf16", CPU, supports(NATIVE)) == ResolvedPrecision("bf16", "bf16", "bf16")
    fallback = resolve_precision("bf16", CPU, supports(EMULATED))
    assert (fallback.requested, fallback.effective, fallback.on_cpu) == ("bf16", "fp32", "fp32")
    assert fallback.reason == ("cpu has no native bf16 (stated: torch CPU capability AVX2, bf16 instructions none): "
                               "emulated bf16 runs far slower than fp32, so the model is served in fp32")
    # a CUDA model: its device decides, the CPU decides for its out-of-memory fallback replica
    assert resolve_precision("bf16", CUDA, supports(EMULATED, NATIVE)) == ResolvedPrecision("bf16", "bf16", "fp32")
    assert resolve_precision("bf16", CUDA, supports(NATIVE, NATIVE)) == ResolvedPrecision("bf16", "bf16", "bf16")
    old_gpu = resolve_precision("bf16", CUDA, supports(NATIVE, Bf16Support(False, "CUDA compute capability 7.5")))
    assert (old_gpu.effective, old_gpu.on_cpu) == ("fp32", "fp32") and "capability 7.5" in old_gpu.reason
    assert old_gpu.on(CPU) == "fp32" and old_gpu.on(CUDA) == "fp32"
    assert resolve_precision("bf16", CUDA, supports(EMULATED, NATIVE)).on(CPU) == "fp32"


@pytest.mark.parametrize(("capability", "instructions", "onednn", "native"), [
    ("AVX512", {"AVX512_BF16"}, "", True),               # Cooper Lake, Zen 4/5
    ("AVX512", {"AVX512_BF16", "AMX_BF16"}, "", True),   # Sapphire Rapids and later
    ("AVX512", set(), "", False),                        # Skylake-SP .. Ice Lake: AVX-512, bf16 emulated
    ("AVX2", set(), "", False),                          # Zen 2/3, Haswell .. Comet Lake
    ("AVX2", {"AVX512_BF16"}, "", False),                # ATEN_CPU_CAPABILITY=avx2 on a bf16 CPU
    ("AVX512", {"AVX512_BF16"}, "AVX2", False),          # ONEDNN_MAX_CPU_ISA keeps oneDNN's kernels below it
    ("AVX512", {"AVX512_BF16"}, "avx512_core", False),
    ("AVX512", {"AVX512_BF16"}, "AVX512_CORE_BF16", True),
    ("AVX512", {"AMX_BF16", "AVX512_BF16"}, "AVX512_CORE_AMX", True),
    ("DEFAULT", {"BF16"}, "", True),                     # Arm with the BF16 extension (Graviton 3)
    ("DEFAULT", set(), "", False),
])
def test_the_cpu_rule(capability: str, instructions: set[str], onednn: str, native: bool) -> None:
    support = cpu_bf16_support(capability, frozenset(instructions), onednn)
    assert support.native is native
    assert support.facts.startswith(f"torch CPU capability {capability}, bf16 instructions ")
    assert (f"ONEDNN_MAX_CPU_ISA={onednn}" in support.facts) is bool(onednn)


def read_in_a_child(env: dict[str, str]) -> str:
    code = "from predictors.precision import read_cpu_bf16_support as r; s = r(); print(s.native, s.facts)"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_reading_this_machine_follows_what_torch_and_onednn_are_told() -> None:
    here = read_cpu_bf16_support()
    assert here.facts.startswith(f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}, ")
    # torch's and oneDNN's own switches make this CPU one without native bf16, for torch and for us
    lowered = read_in_a_child({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert lowered.startswith("False torch CPU capability AVX2, bf16 instructions ")
    assert lowered.endswith("ONEDNN_MAX_CPU_ISA=AVX2")


def test_autocast_only_for_reduced_precision() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast_to(CPU, "fp32"):
        assert torch.mm(a, b).dtype == torch.float32
    with autocast_to(CPU, "bf16"):
        assert torch.mm(a, b).dtype == torch.bfloat16


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


def test_bf16_without_native_support_loads_in_fp32_says_so_once_and_answers_as_fp32(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_tiny(tmp_path / "tiny")
    registry = CollectorRegistry()
    with ThreadPoolExecutor(1) as workers:
        runtimes = {
            precision: ModelRuntime(
                ImageClassificationPredictor("tiny", tmp_path / "tiny", ModelConfig(device="cpu", precision=precision)),
                Metrics(registry if precision == "bf16" else CollectorRegistry()), workers,
                bf16_support=supports(EMULATED),
            )
            for precision in ("fp32", "bf16")
        }
        with caplog.at_level(logging.WARNING, logger="predictors.runtime"):
            for runtime in runtimes.values():
                runtime.load()
        warnings = [r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING and "precision" in r.getMessage()]
        assert warnings == ["model tiny: precision bf16 asked for, serving fp32: cpu has no native bf16 (stated: "
                            "torch CPU capability AVX2, bf16 instructions none): emulated bf16 runs far slower than "
                            "fp32, so the model is served in fp32"]
        model = runtimes["bf16"]
        assert model.ready and model.precision is not None and model.precision.effective == "fp32"
        assert registry.get_sample_value("predictors_model_precision_info",
                                         {"model": "tiny", "precision": "fp32", "requested": "bf16"}) == 1
        predictor = model.predictor
        params = predictor.parse_parameters({})
        prepared = [predictor.prepare({"image": image}, params) for image in (sample_image(1), sample_image(2))]
        with torch.inference_mode():
            ours = model.forward_in_precision(prepared, CPU)
            reference = runtimes["fp32"].forward_in_precision(prepared, CPU)
        assert all(torch.equal(a.probabilities, b.probabilities) for a, b in zip(ours, reference, strict=True))
        for runtime in runtimes.values():
            asyncio.run(runtime.aclose())
