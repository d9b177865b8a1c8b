"""Per-stage profile of face enhancement and visual entailment: where an item's time goes.

One small item per model, in process, through the model's own steps (``prepare`` -> ``forward`` ->
``finish``), under ``torch.profiler`` with a ``record_function`` range per stage. The stages are marked
from outside the model code: its methods (face enhancement: detection, EQFace, GPEN, super-resolution,
compose, SSIM, encode) and its modules' forward hooks (OFA: encoder, decoder) are wrapped on the loaded
instance; nothing in `predictors/` changes.

    .venv/bin/python -m bench stages --model face-enhancement --work-dir bench/results/work
    .venv/bin/python -m bench stages --model visual-entailment

Prints a table per model (stage, calls, wall ms, share of the item's wall time) and the top aten ops by
self CPU time; ``--json`` prints the same as one JSON line. Stages nest (e.g. ``detect`` inside
``prepare``); shares are of the whole item.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from bench.common import model_instance
from bench.inprocess import _decoded, _load

#: model -> {attribute on the loaded predictor: stage name}
METHOD_STAGES = {
    "face-enhancement": {
        "_detect": "detect (RetinaFace)",
        "_face_quality": "face quality (EQFace)",
        "_enhance": "enhance (GPEN)",
        "_super_resolve": "super-resolution (RRDBNet)",
        "compose": "paste-back (compose)",
    },
    "visual-entailment": {},
}


class StageClock:
    """Wall time per stage (the profiler's ranges give CPU time per thread; wall time is what users see)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            with record_function(name):
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.wall[name] += time.perf_counter() - started
                    self.calls[name] += 1

        return timed

    def hook_module(self, name: str, module: torch.nn.Module) -> None:
        starts: list[float] = []

        def before(*_: Any) -> None:
            starts.append(time.perf_counter())

        def after(*_: Any) -> None:
            self.wall[name] += time.perf_counter() - starts.pop()
            self.calls[name] += 1

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)


def profile_model(kind: str, directory: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    workers = ThreadPoolExecutor(2)
    runtime = _load(directory, workers)
    model = runtime.predictor
    clock = StageClock()
    for attribute, stage in METHOD_STAGES[kind].items():
        setattr(model, attribute, clock.wrap(stage, getattr(model, attribute)))
    if kind == "visual-entailment":
        network = model.replicas.on(runtime.device)["ofa"]
        clock.hook_module("OFA encoder (image + text, once per item)", network.encoder)
        clock.hook_module("OFA decoder (all candidate answers)", network.decoder)
    params = model.parse_parameters(parameters)
    item = _decoded(model_instance(kind, 0))
    model.prepare(item, params)  # first-call costs out of the picture
    clock.wall.clear()
    clock.calls.clear()
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        prepared = clock.wrap("prepare", model.prepare)(item, params)
        raw = clock.wrap("forward", runtime.run_forward)([prepared])
        result = clock.wrap("finish", model.finish)(prepared, raw[0], params)
    total = time.perf_counter() - started
    workers.shutdown()
    ops = sorted(
        (e for e in profiler.key_averages() if not e.key.startswith(("prepare", "forward", "finish"))
         and e.key not in clock.wall),
        key=lambda e: e.self_cpu_time_total,
        reverse=True,
    )[:8]
    return {
        "model": kind,
        "item": {"image_size": list(item["image"].size), **{k: v for k, v in item.items() if k != "image"}},
        "parameters": parameters,
        "outputs": sorted(result),
        "item_wall_ms": round(total * 1000, 1),
        "stages": [
            {"stage": name, "calls": clock.calls[name], "wall_ms": round(wall * 1000, 1),
             "share": round(wall / total, 3)}
            for name, wall in sorted(clock.wall.items(), key=lambda kv: -kv[1])
        ],
        "top_ops_self_cpu": [
            {"op": e.key, "calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1000, 1)} for e in ops
        ],
    }


def render(profile_: dict[str, Any]) -> str:
    lines = [f"\n{profile_['model']}: one item {profile_['item']} in {profile_['item_wall_ms']} ms wall"]
    width = max(len(s["stage"]) for s in profile_["stages"])
    lines.append(f"{'stage'.ljust(width)}  calls   wall ms  share")
    for s in profile_["stages"]:
        lines.append(f"{s['stage'].ljust(width)}  {s['calls']:5d}  {s['wall_ms']:8.1f}  {100 * s['share']:4.1f}%")
    lines.append("top aten ops by self CPU time (all threads):")
    for op in profile_["top_ops_self_cpu"]:
        lines.append(f"  {op['op']}: {op['self_cpu_ms']} ms in {op['calls']} calls")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench stages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["face-enhancement", "visual-entailment", "all"], default="all")
    parser.add_argument("--work-dir", type=Path, default=Path(__file__).resolve().parent / "results" / "work")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from predictors.models.demo import make_demo_repository

    kinds = ["face-enhancement", "visual-entailment"] if args.model == "all" else [args.model]
    out = []
    for kind in kinds:
        (directory,) = make_demo_repository(args.work_dir.resolve() / "demo", [kind])
        out.append(profile_model(kind, directory, {}))
    print("BENCH_JSON " + json.dumps(out) if args.json else "\n".join(render(p) for p in out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
