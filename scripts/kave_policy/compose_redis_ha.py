"""The Redis HA override (docker-compose.redis-ha.yml) resolved over docker-compose.yml.

Two data nodes, each as durable and password-protected as the production file's Redis,
able to be the other's replica (``--masterauth`` is the password); the replica replicates
from ``redis``; three Sentinels that watch ``redis`` under the name Kave is told, with a
quorum of two, a password, their state on a volume and a healthcheck; every Kave process
that reads Redis told the three Sentinels, the name and the Sentinels' password, and
started only once they are healthy; the receiver waits for a replica's acknowledgement
(``KAVE_REDIS_MIN_REPLICAS_ACK`` at least 1), which is what the override is for.

Imports ``values``, ``compose_services`` and ``processes``.
"""

from __future__ import annotations

from typing import Any

from . import compose_services as shape
from .processes import PROCESS_SECRETS
from .values import (
    Check,
    Services,
    as_argv,
    as_depends,
    as_env,
    healthcheck_text,
    mounts,
    option_value,
)

MASTER_NAME = "kave-primary"
DATA_NODES = ("redis", "redis-replica")
SENTINELS = ("redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3")
SENTINEL_ADDRESSES = ",".join(f"{name}:26379" for name in SENTINELS)


def check_redis_ha(services: Services, check: Check) -> None:
    for name in (*DATA_NODES, *SENTINELS):
        check(name in services, name, "missing from the Redis HA override")
    if any(name not in services for name in (*DATA_NODES, *SENTINELS)):
        return
    password = option_value(as_argv(services["redis"].get("command")), "--requirepass")
    for name in DATA_NODES:
        _check_data_node(name, services[name], password, check)
    replica = as_argv(services["redis-replica"].get("command"))
    check(
        "--replicaof" in replica
        and replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"],
        "redis-replica",
        "needs --replicaof redis 6379",
    )
    for name in SENTINELS:
        _check_sentinel(name, services[name], check)
    for name in shape.KAVE_SERVICES:
        if "KAVE_REDIS_URL" in PROCESS_SECRETS[name]:
            _check_kave_service(name, services[name], password, check)
    receiver = as_env(services["receiver"].get("environment"))
    acks = receiver.get("KAVE_REDIS_MIN_REPLICAS_ACK", "0")
    check(
        acks.isdigit() and int(acks) >= 1,
        "receiver",
        "KAVE_REDIS_MIN_REPLICAS_ACK must be at least 1: a 200 once the replica holds the "
        "batch, or losing the primary loses what only it held",
    )


def _check_data_node(name: str, node: dict[str, Any], password: str | None, check: Check) -> None:
    # The production file's rules for its Redis, under this node's name.
    shape.check_redis(node, lambda ok, _where, message: check(ok, name, message), raw=False)
    argv = as_argv(node.get("command"))
    check(
        option_value(argv, "--requirepass") == password,
        name,
        "--requirepass must be redis's password (either node may become the primary)",
    )
    check(
        option_value(argv, "--masterauth") == password,
        name,
        "needs --masterauth with the password (it is the replica after a failover)",
    )


def _check_sentinel(name: str, sentinel: dict[str, Any], check: Check) -> None:
    text = "\n".join(as_argv(sentinel.get("command")))
    check("--sentinel" in text, name, "command must run redis-server --sentinel")
    check(
        f"sentinel monitor {MASTER_NAME} redis 6379 2" in text,
        name,
        f"must monitor redis:6379 as {MASTER_NAME} with a quorum of 2",
    )
    for line in (f"sentinel auth-pass {MASTER_NAME} ", "requirepass ", "sentinel sentinel-pass "):
        check(line in text, name, f"its configuration needs '{line.strip()} <password>'")
    check(mounts(sentinel, "/data"), name, "needs a volume on /data (its rewritten config)")
    hc = healthcheck_text(sentinel)
    check("redis-cli" in hc and "26379" in hc and "ping" in hc, name, "healthcheck: ping 26379")


def _check_kave_service(name: str, svc: dict[str, Any], password: str | None, check: Check) -> None:
    env = as_env(svc.get("environment"))
    check(
        env.get("KAVE_REDIS_SENTINELS") == SENTINEL_ADDRESSES,
        name,
        f"KAVE_REDIS_SENTINELS must be {SENTINEL_ADDRESSES}",
    )
    check(
        env.get("KAVE_REDIS_SENTINEL_MASTER") == MASTER_NAME,
        name,
        f"KAVE_REDIS_SENTINEL_MASTER must be {MASTER_NAME}",
    )
    check(
        env.get("KAVE_REDIS_SENTINEL_PASSWORD") == password,
        name,
        "KAVE_REDIS_SENTINEL_PASSWORD must be the Sentinels' password (REDIS_PASSWORD)",
    )
    deps = as_depends(svc.get("depends_on"))
    for sentinel in SENTINELS:
        check(
            deps.get(sentinel) == "service_healthy",
            name,
            f"must depend on {sentinel} with condition: service_healthy",
        )
