"""The chart's PrometheusRule: rendered only when asked, valid for promtool, every alert unit-tested with
`promtool test rules` (firing and silent), its runbook in docs/alerts.md, its codes those of the server."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from predictors.canary.analysis import SERVER_ERROR_CODES, UNAVAILABLE_CODES
from predictors.telemetry.metrics import LATENCY_BUCKETS
from tests.chart.conftest import CHART, NAMESPACE, RELEASE, REPO, Helm
from tests.chart.test_chart import by_kind
from tests.support.prometheus import promtool

ALERT_TESTS = Path(__file__).parent / "alerts" / "alerts.test.yaml"
#: the day-long cases, evaluated every 5 minutes (a file has one evaluation interval)
SLOW_ALERT_TESTS = Path(__file__).parent / "alerts" / "slow-burn.test.yaml"
ALERTS_DOC = REPO / "docs" / "alerts.md"
ONE_MODEL = ("models.general-recognition.predictor=general-recognition",
             "models.general-recognition.weights.storageUri=pvc://weights/general-recognition")


@pytest.fixture(scope="module")
def promtool_path() -> str:
    return promtool()


def rendered_rule(helm: Helm, *values: str, sets: tuple[str, ...] = ()) -> dict[str, Any]:
    (rule,) = by_kind(helm.render(*values, sets=(*ONE_MODEL, "metrics.prometheusRule.enabled=true", *sets)),
                      "PrometheusRule")
    return rule


def alerts_of(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r}


@pytest.fixture(scope="module")
def rules_file(helm4: Helm, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rule groups as a Prometheus rule file (what the Operator hands Prometheus), beside the tests."""
    directory = tmp_path_factory.mktemp("rules")
    (directory / "rules.yaml").write_text(yaml.safe_dump(rendered_rule(helm4)["spec"]))
    for tests in (ALERT_TESTS, SLOW_ALERT_TESTS):
        shutil.copy(tests, directory / tests.name)
    return directory / "rules.yaml"


def test_no_rule_unless_enabled(helm4: Helm) -> None:
    assert not by_kind(helm4.render(sets=ONE_MODEL), "PrometheusRule")


def test_rules_pass_promtool_check(rules_file: Path, promtool_path: str) -> None:
    result = subprocess.run([promtool_path, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_fires_and_stays_silent_in_promtool_unit_tests(rules_file: Path, promtool_path: str) -> None:
    result = subprocess.run([promtool_path, "test", "rules", ALERT_TESTS.name, SLOW_ALERT_TESTS.name],
                            cwd=rules_file.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    fires: set[str] = set()
    silent: set[str] = set()
    cases = [case for tests in (ALERT_TESTS, SLOW_ALERT_TESTS) for case in yaml.safe_load(tests.read_text())["tests"]]
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = set(alerts_of({"spec": yaml.safe_load(rules_file.read_text())}))
    assert len(alerts) == 12, alerts
    assert alerts - fires == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested silent"


def test_promtool_unit_tests_have_teeth(rules_file: Path, promtool_path: str, tmp_path: Path) -> None:
    """The backlog-age case against rules with a raised threshold fails: the expectations are checked."""
    broken = rules_file.read_text().replace("> 900", "> 2000")
    assert broken != rules_file.read_text()
    (tmp_path / "rules.yaml").write_text(broken)
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    tests["tests"] = [case for case in tests["tests"] if case["name"] == "an old backlog, and a fresh one"]
    (tmp_path / "backlog.test.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([promtool_path, "test", "rules", "backlog.test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "VisionPredictorsJobsBacklogOld" in result.stdout + result.stderr


def test_every_alert_has_summary_description_and_a_runbook_in_docs(helm4: Helm) -> None:
    anchors = {_anchor(line) for line in ALERTS_DOC.read_text().splitlines() if line.startswith("#")}
    for name, alert in alerts_of(rendered_rule(helm4)).items():
        annotations = alert["annotations"]
        assert annotations["summary"] and annotations["description"], name
        url = annotations["runbook_url"]
        assert url.startswith("https://example.com/vision-predictors/docs/alerts.md#"), url
        assert url.split("#", 1)[1] in anchors, f"{name}: no heading for {url} in docs/alerts.md"
        assert alert["labels"]["severity"] in ("critical", "warning")


def _anchor(heading: str) -> str:
    """GitHub's/GitLab's anchor of a Markdown heading."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_values_shape_the_rules(helm4: Helm, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"  # a file: Helm 4's --set reads 0.995 as a string
    values.write_text(yaml.safe_dump({"metrics": {"prometheusRule": {
        "slo": {"availability": 0.995, "latency": {"thresholdSeconds": 1}},
        "alerts": {"jobsBacklogAge": {"seconds": 60}},
        "runbookUrl": "https://wiki.example.org/alerts",
        "alertLabels": {"team": "vision"},
        "labels": {"release": "kube-prometheus-stack"},
    }}}))
    rule = rendered_rule(helm4, str(values))
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["namespace"] == NAMESPACE
    alerts = alerts_of(rule)
    assert "(14.4 * (1 - 0.995))" in alerts["VisionPredictorsErrorBudgetBurnFast"]["expr"]
    assert "> 60" in alerts["VisionPredictorsJobsBacklogOld"]["expr"]
    records = {r["record"]: r["expr"] for group in rule["spec"]["groups"] for r in group["rules"] if "record" in r}
    assert 'le=~"1|1.0"' in records["vision_predictors:request_slow:ratio_rate5m"]
    for name, alert in alerts.items():
        assert alert["labels"]["team"] == "vision", name
        assert alert["annotations"]["runbook_url"].startswith("https://wiki.example.org/alerts#")
        if name != "VisionPredictorsDeviceLostRestarts":  # kube-state-metrics series carry no release label
            assert f'app_kubernetes_io_instance="{RELEASE}"' in alert["expr"], name


def test_latency_thresholds_are_bucket_bounds_of_the_server() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    slo = schema["properties"]["metrics"]["properties"]["prometheusRule"]["properties"]["slo"]
    allowed = slo["properties"]["latency"]["properties"]["thresholdSeconds"]["enum"]
    assert set(allowed) <= set(LATENCY_BUCKETS)


def test_alert_codes_are_the_servers(helm4: Helm) -> None:
    """The error and 503 codes the rules select are those of predictors/errors.py (as canary-analysis uses)."""
    text = yaml.safe_dump(rendered_rule(helm4)["spec"])
    code_sets = {frozenset(match.split("|")) for match in re.findall(r'code=~"([^"]+)"', text)}
    assert code_sets == {frozenset(SERVER_ERROR_CODES), frozenset(UNAVAILABLE_CODES)}


def test_scraped_series_carry_track_model_and_release(helm4: Helm) -> None:
    """The monitor copies the pod labels the alerts, the dashboard and canary-analysis select on, and a
    Standard-mode canary's pods carry track canary (KServe merges the canary's labels over stable's: the
    canary's value of the same key wins), stable's stable; Knative pods carry no track, their revision instead."""
    from tests.chart.conftest import scenario

    docs = helm4.render(scenario("canary-standard-values.yaml"), sets=("metrics.serviceMonitor.enabled=true",))
    (monitor,) = by_kind(docs, "PodMonitor")
    copied = set(monitor["spec"]["podTargetLabels"])
    assert {"vision-predictors.io/track", "vision-predictors.io/model", "app.kubernetes.io/instance",
            "vision-predictors.io/unit", "serving.knative.dev/revision"} <= copied
    isvc = next(d for d in by_kind(docs, "InferenceService") if "canary" in d["spec"])
    stable, canary = isvc["spec"]["predictor"]["labels"], isvc["spec"]["canary"][0]["predictor"]["labels"]
    assert (stable["vision-predictors.io/track"], canary["vision-predictors.io/track"]) == ("stable", "canary")
    for labels in (stable, canary):
        assert labels["vision-predictors.io/model"] == "general-recognition"
        assert labels["app.kubernetes.io/instance"] == RELEASE
    merged = {**stable, **canary}  # what the canary pods get
    assert merged["vision-predictors.io/track"] == "canary"
    knative = helm4.render(scenario("canary-knative-values.yaml"), sets=("metrics.serviceMonitor.enabled=true",))
    for knative_isvc in by_kind(knative, "InferenceService"):
        assert "vision-predictors.io/track" not in knative_isvc["spec"]["predictor"]["labels"]
