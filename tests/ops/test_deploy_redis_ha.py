"""deploy/kubernetes/example-redis-ha: Sentinel, TLS and replica acknowledgement on
Kubernetes, and the policy check would notice each way of getting it half right.

The overlay is rendered by `kubectl kustomize` (skipped where kubectl is missing) and
checked by scripts/check_deploy_policy.py, as scripts/check-deploy does; each test then
breaks a copy in one way: KEDA still asking a single Redis, the CA file not mounted, the
Sentinels' port closed, the Sentinels' password given to a process that reads no Redis.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.ops.support import ROOT, load_script

policy = load_script("check_deploy_policy")

Docs = list[dict[str, Any]]


@pytest.fixture(scope="module")
def rendered() -> Docs:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: it renders the Kustomize overlay")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy/kubernetes/example-redis-ha")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def findings(docs: Docs) -> list[str]:
    return list(policy.check_manifests(docs, ROOT))


def find(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_the_overlay_keeps_every_rule(rendered: Docs) -> None:
    assert findings(rendered) == []
    config = next(d for d in rendered if d["kind"] == "ConfigMap")["data"]
    assert config["KAVE_REDIS_MIN_REPLICAS_ACK"] == "1"
    assert find(rendered, "ScaledObject", "kave-worker")["spec"]["triggers"][0]["type"] == (
        "redis-sentinel"
    )


def test_keda_on_a_single_redis_under_sentinel_is_found(rendered: Docs) -> None:
    docs = copy.deepcopy(rendered)
    find(docs, "ScaledObject", "kave-worker")["spec"]["triggers"][0]["type"] = "redis"
    assert any("redis-sentinel" in item for item in findings(docs))


def test_a_container_without_the_ca_file_is_found(rendered: Docs) -> None:
    docs = copy.deepcopy(rendered)
    beat = find(docs, "Deployment", "kave-beat")["spec"]["template"]["spec"]["containers"][0]
    beat["volumeMounts"] = [m for m in beat["volumeMounts"] if m["name"] != "redis-ca"]
    assert any("kave-beat" in item and "KAVE_REDIS_TLS_CA_FILE" in item for item in findings(docs))


def test_the_sentinels_port_closed_is_found(rendered: Docs) -> None:
    docs = copy.deepcopy(rendered)
    egress = find(docs, "NetworkPolicy", "kave-egress-redis")["spec"]["egress"][0]
    egress["ports"] = [p for p in egress["ports"] if p["port"] != 26379]
    assert any("26379" in item for item in findings(docs))


def test_the_sentinel_password_for_a_process_without_redis_is_found(rendered: Docs) -> None:
    docs = copy.deepcopy(rendered)
    job = next(d for d in docs if d["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["env"].append(
        {
            "name": "KAVE_REDIS_SENTINEL_PASSWORD",
            "valueFrom": {
                "secretKeyRef": {"name": "kave-secrets", "key": "KAVE_REDIS_SENTINEL_PASSWORD"}
            },
        }
    )
    assert any("KAVE_REDIS_SENTINEL_PASSWORD" in item for item in findings(docs))
