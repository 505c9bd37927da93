"""deploy/ keeps the promises the README makes, and the policy check would notice if not.

scripts/check_deploy_policy.py is run by `scripts/check-deploy` (part of `make lint`) on
the manifests `kubectl kustomize` renders. These tests run it on the real rendering and
on copies broken in each way it guards against: a Secret in the manifests, a second
public component, KEDA watching another queue than the workers consume, a misspelt KEDA
field, and an alert or dashboard query on a metric Kave does not export.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.support import ROOT, load_script

policy = load_script("check_deploy_policy")


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: it renders the Kustomize overlay")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy/kubernetes/example")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def findings(docs: list[dict[str, Any]]) -> list[str]:
    return list(policy.check_manifests(docs, ROOT))


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_the_rendered_overlay_keeps_every_rule(rendered: list[dict[str, Any]]) -> None:
    assert findings(rendered) == []
    kinds = {doc["kind"] for doc in rendered}
    assert {"ScaledObject", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"} <= kinds


def test_a_secret_in_the_manifests_is_refused(rendered: list[dict[str, Any]]) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kave-secrets"},
        "stringData": {"KAVE_JWT_SECRET_KEY": "x"},
    }
    assert any("never the manifests" in f for f in findings([*rendered, secret]))


def test_only_the_receiver_may_be_public(rendered: list[dict[str, Any]]) -> None:
    docs = copy.deepcopy(rendered)
    internal = find(docs, "NetworkPolicy", "kave-internal-ui")
    del internal["spec"]["ingress"][0]["from"]
    assert any("only the receiver is public" in f for f in findings(docs))


def test_keda_must_watch_the_workers_queue(rendered: list[dict[str, Any]]) -> None:
    docs = copy.deepcopy(rendered)
    find(docs, "ScaledObject", "kave-worker")["spec"]["triggers"][0]["metadata"]["listName"] = (
        "celery"
    )
    assert any("is not KAVE_QUEUE_NAME" in f for f in findings(docs))


def test_keda_objects_are_validated_against_the_vendored_schema(
    rendered: list[dict[str, Any]],
) -> None:
    docs = copy.deepcopy(rendered)
    spec = find(docs, "ScaledObject", "kave-worker")["spec"]
    spec["maxReplicas"] = spec.pop("maxReplicaCount")  # the HPA's spelling
    assert any("ScaledObject/kave-worker" in f and "maxReplicas" in f for f in findings(docs))


def test_the_receiver_is_ready_only_on_readyz(rendered: list[dict[str, Any]]) -> None:
    docs = copy.deepcopy(rendered)
    receiver = find(docs, "Deployment", "kave-receiver")
    receiver["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = (
        "/healthz"
    )
    assert any("/readyz" in f for f in findings(docs))


def test_every_metric_of_the_rules_and_dashboard_is_exported() -> None:
    assert list(policy.check_metrics(ROOT)) == []


def test_an_unknown_metric_in_a_rule_or_panel_is_reported(tmp_path: Path) -> None:
    for part in ("deploy", "receiver", "worker", "shared"):
        shutil.copytree(ROOT / part, tmp_path / part)
    rules_path = tmp_path / "deploy/prometheus/kave-rules.yml"
    rules = rules_path.read_text().replace(
        "max(kave_oldest_unfinished_delivery_age_seconds)", "max(kave_oldest_delivery_age)"
    )
    rules_path.write_text(rules)
    dashboard_path = tmp_path / "deploy/grafana/kave.json"
    dashboard = json.loads(dashboard_path.read_text())
    dashboard["panels"][-1]["targets"][0]["expr"] = "sum(rate(kave_mails_total[5m]))"
    dashboard_path.write_text(json.dumps(dashboard))

    found = list(policy.check_metrics(tmp_path))
    assert any("KaveDeliveriesUnfinished" in f and "kave_oldest_delivery_age" in f for f in found)
    assert any("kave_mails_total" in f for f in found)


@pytest.mark.parametrize(
    ("expr", "metrics"),
    [
        ('sum by (le) (rate(kave_x_bucket{job="a"}[5m]))', {"kave_x_bucket"}),
        ("max(a) > on() group_left() (max(b) or on() vector(60))", {"a", "b"}),
        ("max(a) - max(a offset 1h) > 0", {"a"}),
        ('{__name__=~"kave_.*_up"}', set()),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, metrics: set[str]) -> None:
    assert policy.referenced_metrics(expr) == metrics
