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

