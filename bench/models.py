"""The model directories the benchmark serves, written under the work directory.

- the source directory: for ``general-recognition`` (default) the demo directory written by
  `predictors make-demo-models` (real ResNeSt-101); ``image-classification`` (demo MobileNetV3-Small),
  ``face-enhancement`` (demo GPEN-512 + RetinaFace + RRDBNet + EQFace, the real architectures) and
  ``visual-entailment`` (a small OFA configuration, see models/visual_entailment/demo.py) likewise; ``tiny`` makes
  cheap runs possible (the smoke test).
- ``model-batch`` / ``model-nobatch`` / ``model-overload``: its files (symlinks) with a ``predictor.json``
  that sets the batching of each contender, so one server process hosts all three and the modelscope
  import and start-up are paid once. Idle models cost memory, not CPU.
- ``tiny`` / ``tiny-batch``: a near-zero-cost ``image-classification`` network (global average pool +
  linear on an 8x8 input) for the framework-overhead section.

Run as ``python -m bench.models WORKDIR --kind general-recognition --max-batch-size 8 --max-latency-ms 5
--max-queue 64 --overload-max-queue 16`` (a child process: the demo writer imports torch and modelscope);
with ``--variants '{"NAME": {settings}}'`` it writes only ``repository-KIND-variants/NAME``, one model per
batching setting (the latency-target comparison, bench/latency.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

MODEL_KINDS = ("general-recognition", "image-classification", "face-enhancement", "visual-entailment", "tiny")


def _variant(source: Path, target: Path, predictor: str, demo: bool, **settings: object) -> None:
    """`target` = the files of `source` (symlinked) with its own predictor.json."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.name != "predictor.json":
            (target / path.name).symlink_to(path)
    # the source's own model options (e.g. a demo's answer mapping) stay; batching is the variant's
    source_file = source / "predictor.json"
    kept = json.loads(source_file.read_text()) if source_file.exists() else {}
    content = {**{k: v for k, v in kept.items() if k in ("options", "precision")},
               "predictor": predictor, "demo_weights": demo, **settings}
    (target / "predictor.json").write_text(json.dumps(content, indent=2) + "\n")


def write_tiny(directory: Path, **settings: object) -> None:
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.mean(dim=(2, 3)))

    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        network = Tiny().eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(network, (torch.zeros(2, 3, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(exported, str(directory / "model.pt2"))
    (directory / "labels.txt").write_text("zero\none\ntwo\nthree\n", encoding="utf-8")
    (directory / "config.json").write_text(json.dumps({"input_size": 8, "resize": 8}) + "\n")
    content = {"predictor": "image-classification", **settings}
    (directory / "predictor.json").write_text(json.dumps(content, indent=2) + "\n")


def write_all(
    workdir: Path,
    kind: str,
    max_batch_size: int,
    max_latency_ms: float,
    max_queue: int,
    overload_max_queue: int,
    overload_max_queue_delay_ms: float = 0.0,
    options: dict[str, object] | None = None,
) -> dict[str, str]:
    """Write (or keep) the source directory of `kind` and the repository the server serves; `options`
    (predictor.json "options") replace the source's in the model-* variants."""
    workdir = workdir.resolve()
    demo = workdir / "demo"
    source, predictor, is_demo = _source(demo, kind)
    repo = workdir / f"repository-{kind}"
    batching = {"max_batch_size": max_batch_size, "max_latency_ms": max_latency_ms}
    own = {"options": options} if options is not None else {}
    _variant(source, repo / "model-batch", predictor, is_demo, **batching, max_queue=max_queue, **own)
    _variant(
        source,
        repo / "model-nobatch",
        predictor,
        is_demo,
        max_batch_size=1,
        max_latency_ms=max_latency_ms,
        max_queue=max_queue,
        **own,
    )
    _variant(source, repo / "model-overload", predictor, is_demo, **batching, max_queue=overload_max_queue,
             max_queue_delay_ms=overload_max_queue_delay_ms, **own)
    # The overhead model: batching off (one request per forward, no wait), and on.
    tiny = demo / "tiny"
    if not (tiny / "model.pt2").exists():
        write_tiny(tiny)
    _variant(
        tiny,
        repo / "tiny",
        "image-classification",
        False,
        max_batch_size=1,
        max_latency_ms=0,
        max_queue=max_queue,
    )
    _variant(tiny, repo / "tiny-batch", "image-classification", False, **batching, max_queue=max_queue)
    return {"source": str(source), "repository": str(repo), "predictor": predictor}


def _source(demo: Path, kind: str) -> tuple[Path, str, bool]:
    """The source directory of `kind` under `demo` (written once): (directory, predictor, demo weights)."""
    if kind == "tiny":
        source = demo / "tiny"
        if not (source / "model.pt2").exists():
            write_tiny(source)
        return source, "image-classification", False
    from predictors.models.demo import make_demo_repository

    (source,) = make_demo_repository(demo, [kind])
    return source, kind, True


def write_variants(workdir: Path, kind: str, variants: dict[str, dict[str, object]]) -> dict[str, str]:
    """A repository of `kind` with one model per variant: NAME -> its predictor.json settings."""
    workdir = workdir.resolve()
    source, predictor, is_demo = _source(workdir / "demo", kind)
    repo = workdir / f"repository-{kind}-variants"
    for name, settings in variants.items():
        _variant(source, repo / name, predictor, is_demo, **settings)
    return {"source": str(source), "repository": str(repo), "predictor": predictor}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--kind", choices=MODEL_KINDS, default="general-recognition")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-latency-ms", type=float, default=5.0)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--overload-max-queue", type=int, default=16)
    parser.add_argument("--overload-max-queue-delay-ms", type=float, default=0.0)
    parser.add_argument("--options", type=json.loads, default=None, help="predictor.json options (JSON)")
    parser.add_argument("--variants", type=json.loads, default=None,
                        help='only write these models: {"NAME": {predictor.json settings}} (JSON)')
    args = parser.parse_args()
    if args.variants is not None:
        print(json.dumps(write_variants(args.workdir, args.kind, args.variants)))
        return
    print(
        json.dumps(
            write_all(
                args.workdir,
                args.kind,
                args.max_batch_size,
                args.max_latency_ms,
                args.max_queue,
                args.overload_max_queue,
                args.overload_max_queue_delay_ms,
                args.options,
            )
        )
    )


if __name__ == "__main__":
    main()
