"""The promotion pipeline (.gitlab-ci.yml) as GitLab would read it, through gitlab-ci-local 4.60.0:
schema validation, `needs` resolution, which jobs run where, and the jobs that can run here (lint)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.pipeline.conftest import REPO, run_gcl

STAGES = ["lint", "test", "build", "scan", "smoke", "deploy", "canary", "analysis", "promote", "rollback"]
DEFAULT_BRANCH = [
    "--variable",
    "CI_COMMIT_BRANCH=main",
    "--variable",
    "CI_DEFAULT_BRANCH=main",
    "--variable",
    "CI_PIPELINE_SOURCE=push",
]
MERGE_REQUEST = [
    "--variable",
    "CI_PIPELINE_SOURCE=merge_request_event",
    "--variable",
    "CI_DEFAULT_BRANCH=main",
    "--variable",
    "CI_MERGE_REQUEST_IID=42",
    "--unset-variable",
    "CI_COMMIT_BRANCH",
]


def listed_jobs(output: str) -> dict[str, dict[str, str]]:
    """Parse `gitlab-ci-local --list`: name, stage, when, allow_failure, needs."""
    jobs = {}
    for line in output.splitlines():
        match = re.match(
            r"^(\S+)\s+(lint|test|build|scan|smoke|deploy|canary|analysis|promote|rollback)\s+(\S+)\s+(\S+)\s+(\[.*\])",
            line,
        )
        if match:
            name, stage, when, allow_failure, needs = match.groups()
            jobs[name] = {"stage": stage, "when": when, "allow_failure": allow_failure, "needs": needs}
    return jobs


@pytest.fixture(scope="module")
def preview(gitlab_ci_local: str) -> dict:
    result = run_gcl(gitlab_ci_local, "--preview", *DEFAULT_BRANCH)
    assert result.returncode == 0, result.stderr
    # gitlab-ci-local prints warnings (e.g. about overridden predefined variables) before the document.
    document = result.stdout[result.stdout.index("---") :]
    return yaml.safe_load(document)


def test_list_default_branch_is_schema_valid_and_complete(gitlab_ci_local: str) -> None:
    result = run_gcl(gitlab_ci_local, "--list", *DEFAULT_BRANCH)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "json schema validated" in result.stdout + result.stderr
    jobs = listed_jobs(result.stdout)
    assert set(jobs) == {
        "lint:python",
        "lint:yaml",
        "lint:dockerfile",
        "lint:shell",
        "lint:go",
        "lint:chart",
        "test",
        "build:cu13",
        "build:cu12",
        "build:cpu",
        "build:demo",
        "scan:image:cu13",
        "scan:image:cu12",
        "scan:image:cpu",
        "scan:config",
        "smoke",
        "staging",
        "canary",
        "canary:analysis",
        "canary:promote",
        "canary:rollback",
        "promote",
        "rollback",
    }, result.stdout
    assert [j["stage"] for j in jobs.values()] == sorted(
        (j["stage"] for j in jobs.values()), key=STAGES.index
    )
    assert {name for name, j in jobs.items() if j["when"] == "manual"} == {"canary", "promote", "rollback"}
    assert jobs["staging"]["when"] == "on_success"
    # the canary analysis decides: passing promotes, failing (or undecided at its deadline) rolls back
    assert jobs["canary:analysis"]["when"] == "on_success"
    assert jobs["canary:promote"]["when"] == "on_success"
    assert jobs["canary:rollback"]["when"] == "on_failure"


def test_list_merge_request_has_review_environment_and_no_production(gitlab_ci_local: str) -> None:
    result = run_gcl(gitlab_ci_local, "--list", *MERGE_REQUEST)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = listed_jobs(result.stdout)
    assert {"review", "stop_review", "smoke", "build:demo"} <= set(jobs)
    assert not {"staging", "canary", "canary:analysis", "canary:promote", "canary:rollback", "promote",
                "rollback"} & set(jobs), result.stdout
    assert jobs["stop_review"]["when"] == "manual"


def test_preview_needs_resolve_and_structure(preview: dict) -> None:
    jobs = {name: job for name, job in preview.items() if isinstance(job, dict) and "script" in job}
    assert [s for s in preview["stages"] if not s.startswith(".")] == STAGES
    for name, job in jobs.items():
        for need in job.get("needs", []):
            target = need if isinstance(need, str) else need["job"]
            assert target in jobs, f"{name} needs unknown job {target}"
            assert STAGES.index(jobs[target]["stage"]) <= STAGES.index(job["stage"]), (name, target)
    raw = (REPO / ".gitlab-ci.yml").read_text()
    assert "include" not in yaml.safe_load(raw)  # no include: template: (needs the network)

    # build: buildah, tagged with the commit SHA in the project registry
    def image(job: dict) -> str:
        name = job["image"]["name"] if isinstance(job["image"], dict) else job["image"]
        return preview["variables"].get(name.lstrip("$"), name)

    for variant in ("cu13", "cu12", "cpu", "demo"):
        build = jobs[f"build:{variant}"]
        assert "buildah" in image(build)
        assert build["script"] == ['ci/pipeline-build.sh "$IMAGE" "$TARGET"']
        tag = preview["variables"][build["variables"]["IMAGE"].lstrip("$")]
        assert tag == f"$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA-{variant}"  # the variant is in the tag
        assert build["variables"]["VARIANT"] == variant  # -> <VARIANT>_DIGEST in the dotenv report
    # two CUDA builds: a CUDA 13.x and a CUDA 12.x runtime base, torch from the matching wheel index
    for variant, major in (("cu13", "13"), ("cu12", "12")):
        variables = jobs[f"build:{variant}"]["variables"]
        base = preview["variables"][variables["BASE_IMAGE"].lstrip("$")]
        index = preview["variables"][variables["TORCH_INDEX_URL"].lstrip("$")]
        assert re.fullmatch(rf"nvcr\.io/nvidia/cuda:{major}\.\d+\.\d+-runtime-ubuntu\d+\.\d+", base), base
        assert re.fullmatch(rf"https://download\.pytorch\.org/whl/cu{major}\d", index), index
    # the plain <sha> tag (CPU models in the chart) is the CUDA 13 build, pushed from the same job
    assert preview["variables"][jobs["build:cu13"]["variables"]["ALSO_TAG"].lstrip("$")] == (
        "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA"
    )
    # deploy jobs wait for both CUDA builds (their digests come from the builds' dotenv reports)
    for name in ("staging", "canary", "promote"):
        needs = {n if isinstance(n, str) else n["job"] for n in jobs[name]["needs"]}
        assert {"build:cu13", "build:cu12"} <= needs, name
    # scan: Trivy image scans with GitLab reports; config scan
    for name in ("scan:image:cu13", "scan:image:cu12", "scan:image:cpu"):
        assert "trivy" in image(jobs[name])
        assert "container_scanning" in jobs[name]["artifacts"]["reports"]
    assert "codequality" in jobs["scan:config"]["artifacts"]["reports"]
    # smoke: the demo image as a service
    assert jobs["smoke"]["services"][0]["name"] == "$IMAGE_DEMO"
    assert jobs["smoke"]["services"][0]["alias"] == "predictor"
    # deploy: review with on_stop, staging, production serialized
    assert jobs["review"]["environment"]["on_stop"] == "stop_review"
    assert jobs["stop_review"]["environment"]["action"] == "stop"
    assert jobs["staging"]["environment"]["name"] == "staging"
    for name in ("canary", "promote", "rollback"):
        assert jobs[name]["resource_group"] == "production"
        assert jobs[name]["environment"]["name"] == "production"
        assert jobs[name]["script"] == [f"ci/deploy.sh {name}"]
    assert jobs["staging"]["resource_group"] == "staging"
    assert jobs["review"]["resource_group"] == jobs["stop_review"]["resource_group"]
    assert jobs["canary"]["variables"]["CANARY_PERCENT"] == "10"
    # the gate: analysis in the commit's CPU image (it has the predictors command) after the canary, then the
    # automatic promote / rollback (the runs through gitlab-ci-local against a real Prometheus are in
    # tests/integration/test_canary_analysis.py)
    analysis = jobs["canary:analysis"]
    assert analysis["image"]["name"] == "$IMAGE_CPU" and analysis["image"]["entrypoint"] == [""]
    assert analysis["script"] == ["ci/canary-analysis.sh"] and analysis["stage"] == "analysis"
    assert {n if isinstance(n, str) else n["job"] for n in analysis["needs"]} == {"canary", "build:cpu"}
    assert analysis["artifacts"]["when"] == "always" and analysis["artifacts"]["paths"] == ["canary-analysis/"]
    for name, action in (("canary:promote", "promote"), ("canary:rollback", "rollback")):
        assert jobs[name]["script"] == [f"ci/deploy.sh {action}"]
        assert "canary:analysis" in {n if isinstance(n, str) else n["job"] for n in jobs[name]["needs"]}
        assert jobs[name]["resource_group"] == "production"
    # test: exactly the suite (make test via .ci/run)
    assert jobs["test"]["script"] == [".ci/run"]


def test_a_dangling_need_is_rejected(gitlab_ci_local: str, tmp_path: Path) -> None:
    """The --list check has teeth: the same pipeline with one broken `needs` fails."""
    broken = (
        (REPO / ".gitlab-ci.yml")
        .read_text()
        .replace("needs: [build:demo, scan:image:cpu]", "needs: [build:demo, scan:image:arm]")
    )
    assert "scan:image:arm" in broken
    (tmp_path / ".gitlab-ci.yml").write_text(broken)
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    result = run_gcl(gitlab_ci_local, "--list", *DEFAULT_BRANCH, cwd=tmp_path)
    assert result.returncode != 0
    assert "scan:image:arm" in result.stdout + result.stderr


@pytest.mark.parametrize("job", ["lint:yaml", "lint:dockerfile", "lint:shell", "lint:python"])
def test_lint_job_passes_through_gitlab_ci_local(gitlab_ci_local: str, job: str) -> None:
    """The lint jobs' real scripts, run by gitlab-ci-local (shell executor: no job images here)."""
    if job == "lint:shell" and not shutil.which("shellcheck"):
        subprocess.run(
            ["ci/install-podman.sh"], cwd=REPO, check=True, capture_output=True
        )  # installs shellcheck
    result = run_gcl(gitlab_ci_local, "--force-shell-executor", *DEFAULT_BRANCH, job, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert re.search(rf"PASS\s+{re.escape(job)}", output), output[-3000:]
