"""Face detection time: upstream's `RetinaFaceDetection.detect` against ours (cached prior boxes), CPU.

Both run the same RetinaFace-R50 (demo weights of the real architecture) on the same BGR picture;
the script checks that they return the same boxes and landmarks, then prints the median of each
and the prior boxes alone: upstream's loop, our vectorised build, a cache hit.
Run: ``python -m bench.face_detection [--side 1500]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def median_seconds(work: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    from modelscope.models.cv.image_portrait_enhancement.retinaface.detection import (
        RetinaFaceDetection,
        cfg_re50,
    )
    from modelscope.models.cv.image_portrait_enhancement.retinaface.utils import PriorBox

    from predictors.device import CPU
    from predictors.models.base import ModelConfig
    from predictors.models.face_enhancement import demo
    from predictors.models.face_enhancement.layout import DETECTOR_FILE
    from predictors.models.face_enhancement.predictor import FaceEnhancementPredictor, prior_boxes

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=1500, help="square picture side in pixels (<= 1500: no downscale)")
    parser.add_argument("--repeats", type=int, default=3, help="detect calls timed per implementation")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = demo.write(Path(tmp) / "gpen", seed=1)
        predictor = FaceEnhancementPredictor("face-enhancement", directory, ModelConfig(device="cpu"))
        predictor.load_weights(CPU)
        modules = predictor.replicas.on(CPU)
        upstream = RetinaFaceDetection(str(directory / DETECTOR_FILE), "cpu")
        image = np.random.default_rng(0).integers(0, 256, (args.side, args.side, 3), dtype=np.uint8)
        with torch.inference_mode():
            theirs = upstream.detect(image)
            ours = predictor._detect(modules, CPU, image)  # fills the prior-box cache for this size
            for a, b in zip(theirs, ours, strict=True):
                np.testing.assert_array_equal(a, b)
            upstream_s = median_seconds(lambda: upstream.detect(image), args.repeats)
            ours_s = median_seconds(lambda: predictor._detect(modules, CPU, image), args.repeats)
        size = (args.side, args.side)
        loop_s = median_seconds(lambda: PriorBox(cfg_re50, image_size=size).forward(), 5)
        vectorised_s = median_seconds(lambda: prior_boxes(cfg_re50, *size), 5)
        cached_s = median_seconds(lambda: predictor._prior_boxes(*size, CPU), 5)
    print(f"{args.side}x{args.side} px, {torch.get_num_threads()} torch threads, median of {args.repeats}:")
    print(f"  detect: upstream {upstream_s * 1000:.1f} ms, ours {ours_s * 1000:.1f} ms (same boxes and landmarks)")
    print(f"  prior boxes (median of 5): upstream's loop {loop_s * 1000:.1f} ms, vectorised "
          f"{vectorised_s * 1000:.2f} ms, cached {cached_s * 1000:.3f} ms")


if __name__ == "__main__":
    main()
