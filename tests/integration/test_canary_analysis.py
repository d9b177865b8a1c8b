"""Release safety against real parts: a stable and a canary server process scraped by Debian's Prometheus (labels
as the chart's PodMonitor gives their pods), load on both, and then

- `predictors canary-analysis` decides each scenario (tests/support/canary.py): promote, roll back three bad
  canaries for the right reason, wait on too little traffic;
- the pipeline's gate jobs, run by gitlab-ci-local, promote, roll back, and retry until their deadline;
- every panel of the chart's Grafana dashboard parses and returns data from the scraped series;
- the chart's KEDA queries return the queue depth the servers report;
- the chart's alert rules load into Prometheus and evaluate.

Prometheus scrapes every second; the analysis looks at the load's window, read at the load's end.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devtools.images import sample_image
from tests.support import faults
from tests.support.canary import (
    CHART,
    EXIT_CODES,
    FACE_MODEL,
    MODEL_KEY,
    NAMESPACE,
    RELEASE,
    REPO,
    SCENARIOS,
    CanaryWorld,
    analyse,
    canary_world,
    render_chart,
    send_load,
    wait_for_fresh_scrapes,
)

#: each track of each scenario gets this many requests per second (the quiet canary a tenth of it) for this long
RATE, SECONDS = 4.0, 45.0
#: the check each bad canary must fail
FAILED_CHECK = {"failing": "error ratio", "slow": "p99 latency", "shifted": "top-1 score"}
#: dashboard panels whose series exist on CUDA pools only (none on this CPU machine)
CUDA_ONLY_PANELS = {"GPU memory"}
JOBS = 6


@dataclass
class Round:
    world: CanaryWorld
    codes: dict[str, dict[str, dict[int, int]]]
    #: before the jobs and face-enhancement requests, when the load started, when the analysis looks
    began: float
    started: float
    at: float

    @property
    def window_seconds(self) -> int:
        return math.ceil(self.at - self.started) + 1


def submit_jobs(world: CanaryWorld) -> None:
    """A few asynchronous jobs on the stable server, finished (the dashboard's jobs panels show them)."""
    buffer = io.BytesIO()
    sample_image(5, (faults.HEALTHY_WIDTH, 96)).save(buffer, format="JPEG")
    body = {"instances": [{"image": {"b64": base64.b64encode(buffer.getvalue()).decode()}}]}
    ids = []
    for _ in range(JOBS):
        response = httpx.post(f"{world.stable.url}/v1/models/image-classification:submit", json=body, timeout=30)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    for job_id in ids:
        response = httpx.get(f"{world.stable.url}/v2/jobs/{job_id}", params={"wait": 30}, timeout=60)
        assert response.json()["status"] == "succeeded", response.text


def enhance_faces(world: CanaryWorld, count: int = 3) -> None:
    """A few face-enhancement results on stable (its quality, faces and needs_review panels show them)."""
    buffer = io.BytesIO()
    sample_image(21, (16, 16)).save(buffer, format="PNG")  # 16 px: a GPEN pass on a 2-core CPU costs seconds
    body = {"instances": [{"image": {"b64": base64.b64encode(buffer.getvalue()).decode()}}],
            "parameters": {"output_format": "png"}}
    for _ in range(count):
        response = httpx.post(f"{world.stable.url}/v1/models/{FACE_MODEL}:predict", json=body, timeout=120)
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    (rule,) = [d for d in render_chart(f"models.{MODEL_KEY}.predictor=image-classification",
                                       f"models.{MODEL_KEY}.weights.storageUri=pvc://weights/x",
                                       "metrics.prometheusRule.enabled=true") if d["kind"] == "PrometheusRule"]
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


@pytest.fixture(scope="module")
def round_(demo_repository: Path, tmp_path_factory: pytest.TempPathFactory, rules_file: Path) -> Iterator[Round]:
    with canary_world(demo_repository / "image-classification", tmp_path_factory.mktemp("canary"), with_face=True,
                      rule_files=[rules_file]) as world:
        began = time.time()
        submit_jobs(world)
        enhance_faces(world)
        started = time.time()
        codes = send_load(world, RATE, SECONDS)
        yield Round(world, codes, began, started, wait_for_fresh_scrapes(world))


def test_the_load_reached_both_tracks(round_: Round) -> None:
    for scenario in SCENARIOS:
        stable, canary = round_.codes[scenario.model]["stable"], round_.codes[scenario.model]["canary"]
        assert set(stable) == {200}, (scenario.model, stable)
        assert sum(stable.values()) >= RATE * SECONDS / 2, (scenario.model, stable)
        if scenario.model == "failing":
            assert set(canary) == {200, 500} and canary[500] >= sum(canary.values()) / 10, canary
        else:
            assert set(canary) == {200}, (scenario.model, canary)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.model)
def test_each_scenario_is_decided_as_expected(round_: Round, scenario: Any) -> None:
    code, report, output = analyse(round_.world, scenario.model, round_.window_seconds, at=round_.at)
    assert code == EXIT_CODES[scenario.expected], output
    assert report["verdict"] == scenario.expected and report["exit_code"] == code
    (model,) = report["models"]
    outcomes = {check["name"]: check["outcome"] for check in model["checks"]}
    if scenario.expected == "promote":
        assert set(outcomes.values()) <= {"pass", "skip"}, model["checks"]
        assert outcomes["top-1 score"] == "pass" and outcomes["needs_review share"] == "skip"
    elif scenario.expected == "rollback":
        assert [name for name, outcome in outcomes.items() if outcome == "fail"] == [FAILED_CHECK[scenario.model]], \
            output
    else:
        assert outcomes["traffic"] == "undecided" and "canary" in model["reasons"][0], output
    assert f"verdict: {report['verdict'].upper().replace('ROLLBACK', 'ROLL BACK')}" in output
    markdown = (round_.world.directory / "reports" / f"{scenario.model}.md").read_text()
    assert markdown.startswith("## Canary analysis:") and "| traffic |" in markdown


def test_alert_rules_load_and_evaluate_on_the_scraped_series(round_: Round) -> None:
    groups = round_.world.prometheus.rules()
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 26 and all(rule["health"] == "ok" for rule in rules), \
        [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    ratios = {f"{s['metric']['model']}/{s['metric']['vision_predictors_io_track']}": float(s["value"][1])
              for s in round_.world.prometheus.query("vision_predictors:request_errors:ratio_rate5m", at=round_.at)}
    # stable has no server error series at all: no ratio, rather than 0
    assert ratios["failing/canary"] > 0.1 and ratios.get("failing/stable", 0.0) == 0.0, ratios


# ---- the dashboard -------------------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads((CHART / "files" / "grafana-dashboard.json").read_text())


def grafana_expr(expr: str, rate_interval: str) -> str:
    """A panel's query as Grafana sends it for namespace models, release vp, every model and track."""
    return (expr.replace("$namespace", NAMESPACE).replace("$release", RELEASE).replace("$model", ".*")
            .replace("$track", ".*").replace("$__rate_interval", rate_interval))


def test_every_dashboard_panel_returns_data(round_: Round) -> None:
    """Each query, as Grafana sends it over the test's time range, parses and returns a number (not only NaN)."""
    prometheus = round_.world.prometheus
    rate_interval = f"{math.ceil(round_.at - round_.began) + 5}s"
    empty, checked = [], 0
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]
    for panel in panels:
        for target in panel["targets"]:
            result = prometheus.query(grafana_expr(target["expr"], rate_interval), at=round_.at)  # asserts it parses
            checked += 1
            if not any(not math.isnan(float(sample["value"][1])) for sample in result):
                empty.append(panel["title"])
    assert checked >= len(panels)
    assert set(empty) == CUDA_ONLY_PANELS, f"panels without data: {empty}"


def test_dashboard_variables_list_the_scraped_values(round_: Round) -> None:
    values = {}
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", grafana_expr(variable["definition"], "20s"))
        assert match, variable["definition"]
        response = httpx.get(f"{round_.world.prometheus.url}/api/v1/label/{match[2]}/values",
                             params={"match[]": match[1]}, timeout=10).json()
        values[variable["name"]] = set(response["data"])
    assert values == {"namespace": {NAMESPACE}, "release": {RELEASE},
                      "model": {s.model for s in SCENARIOS} | {FACE_MODEL}, "track": {"stable", "canary"}}


# ---- autoscaling queries ----------------------------------------------------------------------------------------


def autoscaling_queries() -> dict[str, str]:
    """The Prometheus queries the chart renders for KEDA: KServe Standard mode (spec.predictor.autoScaling,
    turned into a ScaledObject by KServe), deployment mode (the chart's ScaledObject), and a pool's own queue."""
    model = [f"models.{MODEL_KEY}.predictor=image-classification", f"models.{MODEL_KEY}.autoscaling.maxReplicas=4",
             "autoscaling.keda.enabled=true"]
    standard = render_chart(*model, f"models.{MODEL_KEY}.weights.storageUri=pvc://weights/x")
    (isvc,) = [d for d in standard if d["kind"] == "InferenceService"]
    external = [m for m in isvc["spec"]["predictor"]["autoScaling"]["metrics"] if m["type"] == "External"]
    deployment = render_chart(*model, "mode=deployment", f"models.{MODEL_KEY}.weights.path=/opt/models/x")
    (scaled,) = [d for d in deployment if d["kind"] == "ScaledObject"]
    unit_query = 'sum(predictors_queue_depth_items{namespace="{{ namespace }}",vision_predictors_io_unit="{{ key }}"})'
    per_unit = render_chart(*model, "mode=deployment", f"models.{MODEL_KEY}.weights.path=/opt/models/x",
                            "autoscaling.keda.query=" + unit_query.replace(",", "\\,"))  # --set splits on commas
    (unit_scaled,) = [d for d in per_unit if d["kind"] == "ScaledObject"]
    return {
        "kserve standard": external[0]["external"]["metric"]["query"],
        "deployment": next(t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus")["metadata"]["query"],
        "pool's own queue": next(t for t in unit_scaled["spec"]["triggers"]
                                 if t["type"] == "prometheus")["metadata"]["query"],
    }


def reported_queue_depth(url: str, model: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(rf'^predictors_queue_depth_items\{{model="{model}"\}} (\S+)$', text, re.MULTILINE)
    assert match, f"no queue depth for {model}"
    return float(match[1])


def test_autoscaling_queries_return_the_queue_depth_the_servers_report(round_: Round) -> None:
    """A slow forward pass (a FORWARD_SLOW image: 12 s) holds the device of each server while 5 (stable) and 3
    (canary) requests queue behind it: every rendered query must return 8, the sum the servers report."""
    queries = autoscaling_queries()
    assert all("{{" not in query for query in queries.values()), queries
    world = round_.world
    slow, healthy = (base64.b64encode(_jpeg(width)).decode() for width in (faults.FORWARD_SLOW, faults.HEALTHY_WIDTH))

    def post(url: str, image: str) -> int:
        return httpx.post(f"{url}/v1/models/image-classification:predict",
                          json={"instances": [{"image": {"b64": image}}]}, timeout=60).status_code

    with ThreadPoolExecutor(16) as pool:
        stalls = [pool.submit(post, server.url, slow) for server in (world.stable, world.canary)]
        time.sleep(1.0)  # the slow item is alone in its batch, on the device
        queued = [pool.submit(post, world.stable.url, healthy) for _ in range(5)]
        queued += [pool.submit(post, world.canary.url, healthy) for _ in range(3)]
        answers: dict[str, float] = {}
        deadline = time.monotonic() + 9.0
        while time.monotonic() < deadline:
            reported = sum(reported_queue_depth(s.url, "image-classification") for s in (world.stable, world.canary))
            answers = {name: sum(float(s["value"][1]) for s in world.prometheus.query(query))
                       for name, query in queries.items()}
            if reported == 8 and set(answers.values()) == {8.0}:
                break
            time.sleep(0.25)
        assert [f.result() for f in stalls + queued] == [200] * 10
    assert answers == dict.fromkeys(queries, 8.0), (answers, queries)


def _jpeg(width: int) -> bytes:
    buffer = io.BytesIO()
    sample_image(7, (width, 96)).save(buffer, format="JPEG")
    return buffer.getvalue()


# ---- the pipeline's gate -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gitlab_ci_local() -> str:
    result = subprocess.run([str(REPO / "ci" / "install-gitlab-ci-local.sh")], cwd=REPO, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(line.split("=", 1) for line in result.stdout.split() if "=" in line)["GITLAB_CI_LOCAL"]


def run_gate(gitlab_ci_local: str, round_: Round, model: str, *variables: str) -> tuple[str, dict[str, Any]]:
    """The gate jobs of .gitlab-ci.yml as GitLab runs them on the default branch (shell executor; deploys as
    DRY_RUN: the helm commands are printed), against the real Prometheus."""
    import os
    import sys

    settings = [
        "CI_COMMIT_BRANCH=main", "CI_DEFAULT_BRANCH=main", "CI_PIPELINE_SOURCE=push", "DRY_RUN=1",
        f"CANARY_PROMETHEUS_URL={round_.world.prometheus.url}", f"PRODUCTION_MODELS={model}",
        f"PRODUCTION_VALUES={round_.world.values_file}", f"PREDICTORS={Path(sys.executable).parent / 'predictors'}",
        f"CANARY_ANALYSIS_ARGS=--window {round_.window_seconds}s --at {round_.at:.3f}",
        f"RELEASE={RELEASE}", "CANARY_ANALYSIS_INTERVAL_SECONDS=2", *variables,
    ]
    args = [gitlab_ci_local, "--state-dir", ".tools/gitlab-ci-local-state", "--no-color", "--force-shell-executor"]
    for setting in settings:
        args += ["--variable", setting]
    args += ["canary:analysis", "canary:promote", "canary:rollback"]
    artefacts = REPO / "canary-analysis"
    try:
        result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600,
                                env={**os.environ, "FORCE_COLOR": "0", "NO_COLOR": "1"})
        report = json.loads((artefacts / "report.json").read_text()) if (artefacts / "report.json").exists() else {}
        assert not report or (artefacts / "report.md").read_text().startswith("## Canary analysis")
        return result.stdout + result.stderr, report
    finally:
        shutil.rmtree(artefacts, ignore_errors=True)  # the job's artefacts, copied back by gitlab-ci-local


@pytest.mark.parametrize(("model", "action"), [("image-classification", "promote"), ("failing", "rollback")])
def test_pipeline_gate_promotes_or_rolls_back_on_the_analysis(gitlab_ci_local: str, round_: Round, model: str,
                                                               action: str) -> None:
    output, report = run_gate(gitlab_ci_local, round_, model, f"NAMESPACE={NAMESPACE}")
    assert report["verdict"] == ("promote" if action == "promote" else "rollback"), output  # the job's artefact
    if action == "promote":
        assert re.search(r"PASS\s+canary:analysis", output) and re.search(r"PASS\s+canary:promote", output), output
        assert f"models.{model}.canary.enabled=false" in output and "canary.trafficPercent=0" in output
        assert not re.search(r"(PASS|FAIL)\s+canary:rollback", output), output
    else:
        assert re.search(r"FAIL\s+canary:analysis", output) and re.search(r"PASS\s+canary:rollback", output), output
        assert f"models.{model}.canary.trafficPercent=0" in output and "canary.enabled=false" in output
        assert not re.search(r"(PASS|FAIL)\s+canary:promote", output), output
    assert "verdict:" in output


def test_pipeline_gate_waits_then_rolls_back_at_its_deadline(gitlab_ci_local: str, round_: Round) -> None:
    started = time.monotonic()
    output, report = run_gate(gitlab_ci_local, round_, "quiet", f"NAMESPACE={NAMESPACE}",
                              "CANARY_ANALYSIS_DEADLINE_SECONDS=5")
    assert report["verdict"] == "undecided"  # the last attempt's report
    assert output.count("canary analysis, attempt") >= 2, output
    assert "undecided at the deadline" in output
    assert re.search(r"FAIL\s+canary:analysis", output) and re.search(r"PASS\s+canary:rollback", output), output
    assert time.monotonic() - started < 300
