"""deploy/ keeps the promises the README makes, and the policy check would notice if not.

scripts/check_deploy_policy.py is run by `scripts/check-deploy` (part of `make lint`) on
the manifests `kubectl kustomize` renders. These tests run it on the real rendering and
on copies broken in each way it guards against: a Secret in the manifests, a second
public component, KEDA watching another queue than the workers consume, a misspelt KEDA
field, an alert or dashboard query on a metric Kave does not export; and least
privilege: a component given a secret its process does not read (or a whole Secret, or
none of what it needs), uvicorn trusting X-Forwarded-For itself, the API on the
receiver's image, egress left open.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.ops.support import ROOT, load_script, rendered_example_overlay

policy = load_script("check_deploy_policy")


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return rendered_example_overlay()


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


# --- least privilege ------------------------------------------------------------------------


def container(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    first: dict[str, Any] = find(docs, kind, name)["spec"]["template"]["spec"]["containers"][0]
    return first


def secret_env(key: str) -> dict[str, Any]:
    return {"name": key, "valueFrom": {"secretKeyRef": {"name": "kave-secrets", "key": key}}}


def give_receiver_the_database(docs: list[dict[str, Any]]) -> None:
    container(docs, "Deployment", "kave-receiver")["env"].append(secret_env("KAVE_DATABASE_URL"))


def give_receiver_the_jwt_key(docs: list[dict[str, Any]]) -> None:
    container(docs, "Deployment", "kave-receiver")["env"].append(secret_env("KAVE_JWT_SECRET_KEY"))


def give_beat_every_secret(docs: list[dict[str, Any]]) -> None:
    container(docs, "Deployment", "kave-beat")["envFrom"].append(
        {"secretRef": {"name": "kave-secrets"}}
    )


def take_the_jwt_key_from_the_api(docs: list[dict[str, Any]]) -> None:
    api = container(docs, "Deployment", "kave-api")
    api["env"] = [e for e in api["env"] if e["name"] != "KAVE_JWT_SECRET_KEY"]


def mislabel_the_worker_process(docs: list[dict[str, Any]]) -> None:
    for entry in container(docs, "Deployment", "kave-worker")["env"]:
        if entry["name"] == "KAVE_PROCESS":
            entry["value"] = "all"


def make_the_migration_database_optional(docs: list[dict[str, Any]]) -> None:
    for entry in container(docs, "Job", "kave-migrate")["env"]:
        if entry["name"] == "KAVE_DATABASE_URL":
            entry["valueFrom"]["secretKeyRef"]["optional"] = True


def put_a_secret_in_the_config(docs: list[dict[str, Any]]) -> None:
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    config["data"]["KAVE_METRICS_TOKEN"] = "x"


def let_uvicorn_trust_proxy_headers(name: str) -> Any:
    def change(docs: list[dict[str, Any]]) -> None:
        server = container(docs, "Deployment", name)
        server["command"] = [a for a in server["command"] if a != "--no-proxy-headers"]

    return change


def run_the_receivers_image_for_the_api(docs: list[dict[str, Any]]) -> None:
    container(docs, "Deployment", "kave-api")["image"] = "registry.example.com/kave-receiver:1.0.0"


def drop_policy(name: str) -> Any:
    def change(docs: list[dict[str, Any]]) -> None:
        docs.remove(find(docs, "NetworkPolicy", name))

    return change


def let_the_receiver_reach_postgresql(docs: list[dict[str, Any]]) -> None:
    policy_doc = find(docs, "NetworkPolicy", "kave-egress-postgresql")
    policy_doc["spec"]["podSelector"]["matchExpressions"][1]["values"].append("receiver")


def open_every_port_to_redis(docs: list[dict[str, Any]]) -> None:
    del find(docs, "NetworkPolicy", "kave-egress-redis")["spec"]["egress"][0]["ports"]


def reach_any_address(docs: list[dict[str, Any]]) -> None:
    del find(docs, "NetworkPolicy", "kave-egress-handoff")["spec"]["egress"][0]["to"]


@pytest.mark.parametrize(
    ("change", "finding"),
    [
        (
            give_receiver_the_database,
            "Deployment/kave-receiver: gets KAVE_DATABASE_URL from Secret kave-secrets, "
            "which receiver does not read",
        ),
        (
            give_receiver_the_jwt_key,
            "Deployment/kave-receiver: gets KAVE_JWT_SECRET_KEY from Secret kave-secrets",
        ),
        (give_beat_every_secret, "Deployment/kave-beat: takes the whole Secret kave-secrets"),
        (
            take_the_jwt_key_from_the_api,
            "Deployment/kave-api: KAVE_JWT_SECRET_KEY is missing",
        ),
        (mislabel_the_worker_process, "Deployment/kave-worker: set KAVE_PROCESS=worker"),
        (
            make_the_migration_database_optional,
            "Job/kave-migrate: KAVE_DATABASE_URL marked optional",
        ),
        (put_a_secret_in_the_config, "KAVE_METRICS_TOKEN reaches every pod"),
        (
            let_uvicorn_trust_proxy_headers("kave-receiver"),
            "Deployment/kave-receiver: run uvicorn with --no-proxy-headers",
        ),
        (
            let_uvicorn_trust_proxy_headers("kave-api"),
            "Deployment/kave-api: run uvicorn with --no-proxy-headers",
        ),
        (run_the_receivers_image_for_the_api, "Deployment/kave-api: must run image kave-api"),
        (drop_policy("kave-default-deny-egress"), "no default-deny egress NetworkPolicy"),
        (drop_policy("kave-egress-dns"), "NetworkPolicy kave-egress-dns"),
        (
            let_the_receiver_reach_postgresql,
            "NetworkPolicy/kave-egress-postgresql: opens egress for receiver",
        ),
        (open_every_port_to_redis, "NetworkPolicy/kave-egress-redis: an egress rule without ports"),
        (reach_any_address, "NetworkPolicy/kave-egress-handoff: an egress rule without `to`"),
    ],
)
def test_the_policy_catches_each_planted_least_privilege_violation(
    rendered: list[dict[str, Any]], change: Any, finding: str
) -> None:
    docs = copy.deepcopy(rendered)
    change(docs)
    found = findings(docs)
    assert any(finding in f for f in found), found


def test_the_receiver_pods_hold_neither_the_database_url_nor_the_jwt_key(
    rendered: list[dict[str, Any]],
) -> None:
    receiver = container(rendered, "Deployment", "kave-receiver")
    names = {entry["name"] for entry in receiver["env"]}
    assert "KAVE_DATABASE_URL" not in names
    assert "KAVE_JWT_SECRET_KEY" not in names
    assert all("secretRef" not in source for source in receiver["envFrom"])
    egress = {
        policy_doc["metadata"]["name"]
        for policy_doc in rendered
        if policy_doc["kind"] == "NetworkPolicy"
        and "Egress" in policy_doc["spec"].get("policyTypes", [])
        and "receiver" in policy.selected_components(policy_doc)
    }
    assert egress == {
        "kave-default-deny-egress",
        "kave-egress-dns",
        "kave-egress-redis",
        "kave-egress-object-store",
    }
