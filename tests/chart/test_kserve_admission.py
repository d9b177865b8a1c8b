"""The Python mirror of KServe's admission rules (tests/chart/kserve_admission.py: a fast check that needs
no Go build) agrees with KServe's own code (the harness, tests/kserve) on the whole corpus: every
InferenceService the chart's scenarios and manifests/ render, and every crafted bad copy. Where the two
disagree, the mirror is wrong: it is fixed, never the expectation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from . import crafted
from . import kserve_admission as ka
from . import kserve_harness as kh
from .conftest import SCENARIOS, Helm, scenario
from .test_kserve_code import (
    MANIFEST_SETS,
    cluster_for,
    manifest_docs,
    readme_hardened_default,
    refusals_of,
    with_bad_copy,
)

Obj = dict[str, Any]


def mirror_refusals(isvc: Obj, cluster: kh.Cluster) -> list[str]:
    """The mirror's verdict on one InferenceService in `cluster` (its storage containers, namespace and
    Pod Security level)."""
    specs = {c["metadata"]["name"]: c["spec"] for c in cluster.storage_containers}
    placed = copy.deepcopy(isvc)
    placed["metadata"]["namespace"] = cluster.namespace
    errors = ka.admission_errors(placed, specs)
    if cluster.pod_security == "restricted":
        errors += ka.rule_restricted_storage_initializer(placed, {n: s["container"] for n, s in specs.items()})
    return errors


def corpus(helm: Helm) -> list[tuple[str, list[Obj], kh.Cluster]]:
    """(id, documents, cluster) of everything we ship and every crafted bad copy."""
    items = [(f"scenario:{values}", helm.render(scenario(values)), cluster_for(values)) for values in SCENARIOS]
    hardened = readme_hardened_default(kh.kserve_storage_containers())
    for name, (base, *_) in MANIFEST_SETS.items():
        cluster = kh.Cluster(namespace="models", gateway_api=name.endswith("standard"), storage_containers=hardened)
        items.append((f"manifests:{name}", manifest_docs(base), cluster))
    for bad in crafted.BAD_COPIES:
        docs, _ = with_bad_copy(helm, bad)
        items.append((f"bad:{bad.id}", docs, cluster_for(bad.scenario)))
    restricted = "restricted-storage-values.yaml"
    docs, _ = with_bad_copy(helm, crafted.BadCopy("s3-under-restricted", restricted,
                                                  crafted.env("STORAGE_URI", "s3://bucket/m"), ""))
    for doc in docs:
        doc.get("spec", {}).get("predictor", {}).pop("storageContainerName", None)
    items.append(("bad:s3-under-restricted", docs, cluster_for(restricted)))
    return items


def test_mirror_agrees_with_kserve_on_the_whole_corpus(helm4: Helm) -> None:
    disagreements = []
    verdicts = {"refused": 0, "admitted": 0}
    for item, docs, cluster in corpus(helm4):
        report = kh.admit(docs, cluster)
        for isvc in (d for d in docs if d["kind"] == "InferenceService"):
            name = isvc["metadata"]["name"]
            real, mirror = refusals_of(report, name), mirror_refusals(isvc, cluster)
            verdicts["refused" if real else "admitted"] += 1
            if bool(real) != bool(mirror):
                disagreements.append(f"{item} {name}: KServe {real or 'admits'}; mirror {mirror or 'admits'}")
    assert disagreements == []
    # both verdicts occur, so agreement is not agreement on one answer
    assert verdicts["refused"] >= len(crafted.BAD_COPIES) and verdicts["admitted"] >= 20


def test_every_rule_cites_the_kserve_source_it_mirrors() -> None:
    rules = [*ka.ISVC_RULES, ka.rule_storage_container, ka.rule_restricted_storage_initializer]
    for rule in rules:
        doc = rule.__doc__ or ""
        assert "Mirrors " in doc and "@ KSERVE_VERSION" in doc and ("pkg/" in doc or "config/" in doc), rule.__name__
    assert kh.module_versions()[kh.KSERVE_MODULE] == ka.KSERVE_VERSION


@pytest.mark.parametrize("rule", ka.ISVC_RULES, ids=[r.__name__ for r in ka.ISVC_RULES])
def test_every_rule_is_exercised_by_a_bad_copy(helm4: Helm, rule: Any) -> None:
    """Each mirrored rule refuses some bad copy (so no rule passes the agreement test vacuously)."""
    assert any(rule(with_bad_copy(helm4, bad)[1]) for bad in crafted.BAD_COPIES), rule.__name__
