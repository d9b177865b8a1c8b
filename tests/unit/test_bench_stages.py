"""`bench.stages` profiles one item through a loaded model's runtime (it called the loader wrongly before)."""

from __future__ import annotations

from pathlib import Path

from bench.stages import METHOD_STAGES, profile_model
from predictors.models.face_enhancement import demo


def test_face_enhancement_profile_names_its_stages(tmp_path: Path) -> None:
    directory = demo.write(tmp_path / "face-enhancement", seed=1)
    profile = profile_model("face-enhancement", directory, {"require_face": False, "upscale": False})
    stages = {row["stage"]: row for row in profile["stages"]}
    assert {"prepare", "forward", "finish", *METHOD_STAGES["face-enhancement"].values()} - {
        "super-resolution (RRDBNet)"} <= set(stages)
    assert all(row["calls"] >= 1 and row["wall_ms"] >= 0 for row in stages.values())
    assert profile["outputs"] == ["faces", "height", "image", "needs_review", "quality_score", "width"]


def test_compare_interleaves_before_and_after_and_reports_parity() -> None:
    import numpy as np

    from bench.compare import interleaved, row

    calls: list[str] = []
    timing = interleaved(lambda: calls.append("before"), lambda: calls.append("after"), rounds=3)
    # one untimed call of each, then strictly alternating rounds: both sides see the same machine load
    assert calls == ["before", "after"] * 4
    assert timing["rounds"] == 3 and timing["ratio_range"][0] <= timing["ratio"] <= timing["ratio_range"][1]
    image = np.zeros((4, 4, 3), np.uint8)
    changed = image.copy()
    changed[1, 2, 0] = 2
    assert row("x", "s", lambda: image, lambda: changed, rounds=1)["parity"] == "max 2 grey levels"
    scores = np.zeros(3, np.float32)
    assert row("x", "s", lambda: scores, lambda: scores + 1e-3, rounds=1)["parity"] == "max abs diff 1.0e-03"
