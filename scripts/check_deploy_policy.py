"""Kave's deploy/ rules that no schema, scanner or promtool knows about.

Run by scripts/check-deploy with the deploy tools' Python (it needs PyYAML and
jsonschema, which kubernetes-validate brings). Checks the rendered manifests (KEDA kinds
against deploy/kubernetes/schemas/keda.json, which kubernetes-validate cannot), the
properties the README promises (no Secret shipped, only the receiver public, the
receiver ready on /readyz, KEDA on the configured queue, one beat, each component on
its own image), least privilege
(each component given only the secrets its process reads, uvicorn never trusting
X-Forwarded-For itself, egress denied by default and opened per component), and that
every metric the alert rules and the Grafana dashboard use is one Kave exports. Prints
one line per finding; exits 1 if any.

    python scripts/check_deploy_policy.py RENDERED.yaml [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kave_policy.processes import COMPONENT_PROCESS, PROCESS_SECRETS, S3_KEYS, SECRET_NAME
from kave_policy.uvicorn import PROXY_HEADERS_FINDING, trusts_proxy_headers

ROOT = Path(__file__).resolve().parent.parent
# Kinds kubernetes-validate checks against the Kubernetes schemas.
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "Job",
    "Namespace",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Service",
    "ServiceAccount",
}
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
COMPONENTS = {"receiver", "api", "worker", "beat", "flower"}
# Left out of the Secret, the pod's IAM role is used instead: the only optional keys.
OPTIONAL_SECRET_KEYS = S3_KEYS
# What a process that reads Redis may also be given, when the Sentinels have a password
# (README, "Redis: replicas, Sentinel and TLS"): allowed, never required.
REDIS_SENTINEL_KEYS = frozenset({"KAVE_REDIS_SENTINEL_PASSWORD"})
# Whole Secrets (envFrom) a component may take: the hand-off signing secrets, whose names
# the routes file chooses (README, "Handing emails to your platform").
WHOLE_SECRETS: dict[str, set[str]] = {"worker": {"kave-handoff"}}
# The image each component runs (its repository's last path part): the public receiver's
# carries nothing of the API or the worker (Dockerfile.receiver, .api, .worker).
IMAGES = {"receiver": "kave-receiver", "api": "kave-api"} | dict.fromkeys(
    ("worker", "beat", "flower", "migrate"), "kave-worker"
)
# Which components each egress policy may open a way out for (all: every Kave pod).
EGRESS_POLICIES = {
    "kave-egress-dns": {"receiver", "api", "worker", "text-worker", "beat", "flower", "migrate"},
    "kave-egress-redis": {"receiver", "api", "worker", "text-worker", "beat", "flower"},
    "kave-egress-postgresql": {"api", "worker", "text-worker", "migrate"},
    "kave-egress-object-store": {"receiver", "api", "worker", "text-worker"},
    "kave-egress-handoff": {"worker"},
}
# Metric sources: every "kave_..." name given to a Counter, Gauge, Histogram or family.
METRIC_SOURCES = ("receiver", "worker", "shared", "api")
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")
BUILTIN_METRICS = {"up"}
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left",
    "group_right", "and", "or", "unless", "rate", "irate", "increase", "delta", "offset",
    "absent", "histogram_quantile", "vector", "scalar", "bool", "le", "topk", "bottomk",
}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("rendered", type=Path)
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args()
    root: Path = args.root
    docs = [d for d in yaml.safe_load_all(args.rendered.read_text()) if d]
    findings = [
        *check_manifests(docs, root),
        *check_metrics(root),
    ]
    for finding in findings:
        print(f"FAIL: {finding}")
    return 1 if findings else 0


# --- manifests ------------------------------------------------------------------------


def check_manifests(docs: list[dict[str, Any]], root: Path) -> Iterator[str]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc.get("kind", "?"), []).append(doc)
    yield from check_kinds(docs, root)
    deployments = {name(d): d for d in by_kind.get("Deployment", [])}
    yield from check_workloads(deployments)
    if not by_kind.get("Job"):
        yield "the migration Job is missing"
    workloads = [*by_kind.get("Deployment", []), *by_kind.get("Job", [])]
    yield from check_process_settings(workloads)
    yield from check_config_holds_no_secret(by_kind.get("ConfigMap", []))
    yield from check_uvicorn(workloads)
    yield from check_images(workloads)
    yield from check_network_policies(by_kind.get("NetworkPolicy", []))
    yield from check_egress(by_kind.get("NetworkPolicy", []))
    yield from check_scaling(by_kind)
    yield from check_redis_settings(by_kind)


def check_kinds(docs: list[dict[str, Any]], root: Path) -> Iterator[str]:
    """Every object is of a kind some schema validates; KEDA's against ours."""
    schema = json.loads((root / "deploy/kubernetes/schemas/keda.json").read_text())
    for doc in docs:
        kind = doc.get("kind", "?")
        if kind in KEDA_KINDS:
            validator = jsonschema.Draft202012Validator({**schema, "$ref": f"#/$defs/{kind}"})
            for error in validator.iter_errors(doc):
                path = "/".join(str(p) for p in error.absolute_path)
                yield f"{kind}/{name(doc)}: {path}: {error.message}"
        elif kind not in CORE_KINDS:
            yield f"{kind}/{name(doc)}: a kind no schema here validates (add it to the check)"
        if kind == "Secret":
            yield f"Secret/{name(doc)}: secrets come from existing Secrets, never the manifests"


def check_workloads(deployments: dict[str, dict[str, Any]]) -> Iterator[str]:
    for component in sorted(COMPONENTS):
        if f"kave-{component}" not in deployments:
            yield f"Deployment kave-{component} is missing"
    receiver = deployments.get("kave-receiver")
    if receiver is not None:
        probe = containers(receiver)[0].get("readinessProbe", {}).get("httpGet", {})
        if probe.get("path") != "/readyz":
            yield "kave-receiver: readiness must be /readyz (ready only when it can enqueue)"
    beat = deployments.get("kave-beat")
    if beat is not None:
        spec = beat["spec"]
        if spec.get("replicas") != 1 or spec.get("strategy", {}).get("type") != "Recreate":
            yield "kave-beat: exactly one replica, strategy Recreate (never two beats)"
    for deployment in deployments.values():
        for container in containers(deployment):
            sources = container.get("envFrom", [])
            if any("secretRef" in s and s["secretRef"].get("optional") for s in sources):
                yield f"{name(deployment)}: a Secret marked optional (secrets are required)"


def component(workload: dict[str, Any]) -> str:
    labels = workload["spec"]["template"].get("metadata", {}).get("labels", {})
    return str(labels.get("app.kubernetes.io/component", "?"))


def check_process_settings(workloads: list[dict[str, Any]]) -> Iterator[str]:
    """Each process is told which it is and given only the Secret keys it reads
    (kave_policy.processes.PROCESS_SECRETS, by the component label of its pod)."""
    for workload in workloads:
        part = component(workload)
        needed = PROCESS_SECRETS.get(part)
        where = f"{workload['kind']}/{name(workload)}"
        if needed is None:
            yield f"{where}: component {part!r} has no entry in PROCESS_SECRETS (add what it reads)"
            continue
        allowed = needed | (REDIS_SENTINEL_KEYS if "KAVE_REDIS_URL" in needed else frozenset())
        for container in containers(workload):
            env = container.get("env", [])
            process = [e.get("value") for e in env if e.get("name") == "KAVE_PROCESS"]
            expected = COMPONENT_PROCESS.get(part, part)
            if process != [expected]:
                yield (
                    f"{where}: set KAVE_PROCESS={expected} "
                    f"(production checks what {expected} reads)"
                )
            given: set[str] = set()
            for entry in env:
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    if SECRET_NAME.search(entry.get("name", "")) and "value" in entry:
                        yield f"{where}: {entry['name']} written in the manifest (use a Secret)"
                    continue
                given.add(ref.get("key"))
                if ref.get("key") not in allowed:
                    yield (
                        f"{where}: gets {ref.get('key')} from Secret {ref.get('name')}, "
                        f"which {part} does not read (only {', '.join(sorted(allowed))})"
                    )
                if ref.get("optional") and ref.get("key") not in OPTIONAL_SECRET_KEYS:
                    yield f"{where}: {ref.get('key')} marked optional (secrets are required)"
            for key in sorted(needed - OPTIONAL_SECRET_KEYS - given):
                yield f"{where}: {key} is missing ({part} refuses to start without it)"
            for source in container.get("envFrom", []):
                secret = source.get("secretRef", {}).get("name")
                if secret is not None and secret not in WHOLE_SECRETS.get(part, set()):
                    yield (
                        f"{where}: takes the whole Secret {secret} (envFrom): name the keys "
                        f"{part} reads with secretKeyRef instead"
                    )


def check_config_holds_no_secret(configmaps: list[dict[str, Any]]) -> Iterator[str]:
    """kave-config reaches every pod: no secret in it, and no worker-only setting."""
    for config in configmaps:
        for key in config.get("data", {}):
            if key in set().union(*PROCESS_SECRETS.values()) or SECRET_NAME.search(key):
                yield f"ConfigMap/{name(config)}: {key} reaches every pod; put it in a Secret"
            if key == "KAVE_HANDOFF_ROUTES_FILE":
                yield (
                    f"ConfigMap/{name(config)}: KAVE_HANDOFF_ROUTES_FILE belongs to the "
                    "worker's env (beat and Flower would demand the routes' secrets)"
                )


def check_uvicorn(workloads: list[dict[str, Any]]) -> Iterator[str]:
    for workload in workloads:
        for container in containers(workload):
            if trusts_proxy_headers([*container.get("command", []), *container.get("args", [])]):
                yield f"{workload['kind']}/{name(workload)}: {PROXY_HEADERS_FINDING}"


def check_images(workloads: list[dict[str, Any]]) -> Iterator[str]:
    for workload in workloads:
        expected = IMAGES.get(component(workload))
        for container in containers(workload):
            image = str(container.get("image", "")).split("@")[0].rsplit("/", 1)[-1]
            if expected is not None and image.partition(":")[0] != expected:
                yield f"{workload['kind']}/{name(workload)}: must run image {expected}"


def selected_components(policy: dict[str, Any]) -> set[str]:
    """The Kave components a NetworkPolicy's podSelector picks."""
    selector = policy["spec"].get("podSelector", {})
    everything = set(PROCESS_SECRETS)
    chosen = set(everything)
    labels = selector.get("matchLabels", {})
    if "app.kubernetes.io/component" in labels:
        chosen &= {labels["app.kubernetes.io/component"]}
    for expression in selector.get("matchExpressions", []):
        if expression.get("key") == "app.kubernetes.io/component":
            values = set(expression.get("values", []))
            chosen = chosen & values if expression.get("operator") == "In" else chosen - values
    return chosen


def check_egress(policies: list[dict[str, Any]]) -> Iterator[str]:
    """Egress denied by default; DNS for all; each component only its services, by port,
    to the addresses the overlay names."""
    egress = [p for p in policies if "Egress" in p["spec"].get("policyTypes", [])]
    if not any(
        not p["spec"].get("egress") and selected_components(p) == set(PROCESS_SECRETS)
        for p in egress
    ):
        yield "no default-deny egress NetworkPolicy for every Kave pod"
    if not any(
        name(p) == "kave-egress-dns" and selected_components(p) == set(PROCESS_SECRETS)
        for p in egress
    ):
        yield "NetworkPolicy kave-egress-dns (every Kave pod to the cluster DNS) is missing"
    for policy in egress:
        rules = policy["spec"].get("egress", [])
        if not rules:
            continue
        where = f"NetworkPolicy/{name(policy)}"
        allowed = EGRESS_POLICIES.get(name(policy))
        if allowed is None:
            yield f"{where}: an egress policy the check does not know (add it to EGRESS_POLICIES)"
            continue
        extra = selected_components(policy) - allowed
        if extra:
            yield f"{where}: opens egress for {', '.join(sorted(extra))}, which do not use it"
        for rule in rules:
            if not rule.get("ports"):
                yield f"{where}: an egress rule without ports opens every port"
            if not rule.get("to"):
                yield f"{where}: an egress rule without `to` reaches any address (overlay: set it)"


def check_scaling(by_kind: dict[str, list[dict[str, Any]]]) -> Iterator[str]:
    """KEDA watches the queue the workers consume (KAVE_QUEUE_NAME; the text workers':
    KAVE_TEXT_QUEUE_NAME)."""
    config = {
        key: value
        for doc in by_kind.get("ConfigMap", [])
        if name(doc).startswith("kave-config")
        for key, value in doc.get("data", {}).items()
    }
    if not by_kind.get("ScaledObject"):
        yield "the workers' KEDA ScaledObject is missing"
    for scaled in by_kind.get("ScaledObject", []):
        text = name(scaled).endswith("text-worker")
        setting = "KAVE_TEXT_QUEUE_NAME" if text else "KAVE_QUEUE_NAME"
        queue = config.get(setting)
        for trigger in scaled["spec"].get("triggers", []):
            listed = trigger.get("metadata", {}).get("listName")
            if trigger.get("type") in ("redis", "redis-sentinel") and listed != queue:
                yield (
                    f"ScaledObject/{name(scaled)}: listName {listed!r} is not {setting} {queue!r}"
                )


def check_redis_settings(by_kind: dict[str, list[dict[str, Any]]]) -> Iterator[str]:
    """Sentinel and TLS said once in kave-config, and everything that reads Redis follows:
    KEDA asks the same Sentinels for the same primary, the CA file is mounted into every
    container that reads Redis, and the Sentinels' port is open."""
    config = {
        key: value
        for doc in by_kind.get("ConfigMap", [])
        if name(doc).startswith("kave-config")
        for key, value in doc.get("data", {}).items()
    }
    sentinels = config.get("KAVE_REDIS_SENTINELS")
    if sentinels:
        for scaled in by_kind.get("ScaledObject", []):
            for trigger in scaled["spec"].get("triggers", []):
                metadata = trigger.get("metadata", {})
                if trigger.get("type") != "redis-sentinel" or (
                    metadata.get("addresses") != sentinels
                    or metadata.get("sentinelMaster") != config.get("KAVE_REDIS_SENTINEL_MASTER")
                ):
                    yield (
                        f"ScaledObject/{name(scaled)}: with KAVE_REDIS_SENTINELS, KEDA's trigger "
                        "must be redis-sentinel with the same addresses and sentinelMaster"
                    )
        ports = {
            port.get("port")
            for policy in by_kind.get("NetworkPolicy", [])
            if name(policy) == "kave-egress-redis"
            for rule in policy["spec"].get("egress", [])
            for port in rule.get("ports", [])
        }
        sentinel_ports = {int(address.rpartition(":")[2]) for address in sentinels.split(",")}
        for port in sorted(sentinel_ports - ports):
            yield f"NetworkPolicy/kave-egress-redis: the Sentinels' port {port} is not open"
    ca_file = config.get("KAVE_REDIS_TLS_CA_FILE")
    if ca_file:
        for workload in by_kind.get("Deployment", []):
            if "KAVE_REDIS_URL" not in PROCESS_SECRETS.get(component(workload), set()):
                continue
            for container in containers(workload):
                mounted = [
                    mount.get("mountPath", "")
                    for mount in container.get("volumeMounts", [])
                    if mount.get("readOnly")
                ]
                if not any(ca_file.startswith(path.rstrip("/") + "/") for path in mounted):
                    yield (
                        f"Deployment/{name(workload)}: KAVE_REDIS_TLS_CA_FILE {ca_file} is not "
                        "in a read-only volume mounted into the container"
                    )


def check_network_policies(policies: list[dict[str, Any]]) -> Iterator[str]:
    """Only the receiver may be reached from anywhere; everything else names its peers."""
    deny_all = [
        p
        for p in policies
        if "Ingress" in p["spec"].get("policyTypes", []) and not p["spec"].get("ingress")
    ]
    if not deny_all:
        yield "no default-deny ingress NetworkPolicy"
    for policy in policies:
        selector = policy["spec"].get("podSelector", {}).get("matchLabels", {})
        for rule in policy["spec"].get("ingress", []):
            if not rule.get("from") and selector.get("app.kubernetes.io/component") != "receiver":
                yield f"NetworkPolicy/{name(policy)}: open to all, but only the receiver is public"


def name(doc: dict[str, Any]) -> str:
    return str(doc.get("metadata", {}).get("name", "?"))


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


# --- metric names in the rules and the dashboard -----------------------------------


def known_metrics(root: Path) -> set[str]:
    names = set(BUILTIN_METRICS)
    for package in METRIC_SOURCES:
        for source in (root / package).rglob("*.py") if (root / package).is_dir() else []:
            names.update(re.findall(r"[\"'](kave_[a-z0-9_]+)[\"']", source.read_text()))
    return names


def referenced_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside braces, strings and
    ``by (...)`` lists, that are not PromQL's own words."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {w for w in words if w not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]?", w)}


def base_name(metric: str) -> str:
    for suffix in SUFFIXES:
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


def check_metrics(root: Path) -> Iterator[str]:
    known = known_metrics(root)

    def unknown(expr: str) -> set[str]:
        return {m for m in referenced_metrics(expr) if base_name(m) not in known and m not in known}

    rules = yaml.safe_load((root / "deploy/prometheus/kave-rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            for metric in sorted(unknown(rule["expr"])):
                yield f"alert {rule.get('alert')}: unknown metric {metric}"

    try:
        dashboard = json.loads((root / "deploy/grafana/kave.json").read_text())
    except ValueError as exc:
        yield f"deploy/grafana/kave.json is not JSON: {exc}"
        return
    for key in ("uid", "title", "panels"):
        if not dashboard.get(key):
            yield f"deploy/grafana/kave.json: no {key}"
    exprs = 0
    ids = set()
    for panel in dashboard.get("panels", []):
        if panel.get("id") in ids:
            yield f"dashboard panel id {panel.get('id')} is used twice"
        ids.add(panel.get("id"))
        for target in panel.get("targets", []):
            exprs += 1
            for metric in sorted(unknown(target["expr"])):
                yield f"dashboard panel {panel.get('title')!r}: unknown metric {metric}"
    if not exprs:
        yield "deploy/grafana/kave.json: no panel queries anything"

    scrape = yaml.safe_load((root / "deploy/prometheus/scrape-kubernetes.yml").read_text())
    relabels = scrape["scrape_configs"][0]["relabel_configs"]
    if not any(
        r.get("target_label") == "job" and r.get("replacement") == "kave-$1" for r in relabels
    ):
        yield "scrape-kubernetes.yml: the rules expect job=kave-<component>"


if __name__ == "__main__":
    sys.exit(main())
