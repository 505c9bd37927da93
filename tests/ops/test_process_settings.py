"""Each process starts with only the settings it reads, as compose and Kubernetes give them.

Production's checks in shared/settings/production.py are per process (KAVE_PROCESS,
PROCESS_NEEDS), so that docker-compose.yml and deploy/kubernetes can hand each container
only its own secrets: the receiver runs without the database URL and the JWT key, beat
with Redis alone. These tests build each process's settings from exactly the environment
its container gets, show that leaving out any one of them stops it, keep the policy
scripts' one table in step with PROCESS_NEEDS, and start a real receiver with its subset.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from shared.settings import PROCESS_NEEDS, Settings, SettingsError
from tests.ops.support import ROOT, load_script, policy_module, rendered_example_overlay
from tests.ops.test_compose_secrets import resolve
from tests.services import free_port, wait_until

deploy_policy = load_script("check_deploy_policy")
processes = policy_module("processes")
compose_privilege = policy_module("compose_privilege")

PROCESSES = ("receiver", "api", "worker", "beat", "flower", "migrate")
S3_KEYS = {"KAVE_S3_ACCESS_KEY_ID", "KAVE_S3_SECRET_ACCESS_KEY"}
# Settings that are needed but are no secret: they come from kave-config / kave.env.
NOT_SECRET = {"KAVE_OBJECT_STORE", "KAVE_MANDRILL_WEBHOOK_URLS"}

# Values production accepts (random-looking, long enough).
STRONG = "Vq7xK2mZ9pL4sT8wN3bR6yH1cJ5dF0gA"
# The secrets compose and Kubernetes both hand over, then what each spells its own way.
SHARED_SECRETS = {
    "KAVE_S3_ACCESS_KEY_ID": "kave-access-Xq7v",
    "KAVE_S3_SECRET_ACCESS_KEY": "s3-" + STRONG,
    "KAVE_MANDRILL_WEBHOOK_KEYS": "mandrill-webhook-key",
    "KAVE_JWT_SECRET_KEY": "jwt-" + STRONG,
    "KAVE_METRICS_TOKEN": "metrics-" + STRONG,
    "FLOWER_BASIC_AUTH": "ops:flower-" + STRONG,
}
COMPOSE_VALUES = SHARED_SECRETS | {
    "POSTGRES_PASSWORD": "pg-" + STRONG,
    "REDIS_PASSWORD": "redis-" + STRONG,
    "KAVE_MANDRILL_WEBHOOK_URLS": "https://kave.example.invalid/hook",
}
SECRET_VALUES = SHARED_SECRETS | {
    "KAVE_DATABASE_URL": f"postgresql+psycopg://kave:pg-{STRONG}@db.invalid:5432/kave",
    "KAVE_REDIS_URL": f"redis://:redis-{STRONG}@redis.invalid:6379/0",
}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No KAVE_* or FLOWER_* of this process, and no .env in the working directory."""
    for name in list(os.environ):
        if name.startswith(("KAVE_", "FLOWER_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def settings_from(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def compose_environment(process: str) -> dict[str, str]:
    services = resolve((ROOT / "docker-compose.yml").read_text(), COMPOSE_VALUES)["services"]
    return {k: str(v) for k, v in services[process]["environment"].items()}


# --- the tables agree ------------------------------------------------------------------------


@pytest.mark.parametrize("process", PROCESSES)
def test_the_policy_table_gives_each_process_what_it_needs_and_no_more(process: str) -> None:
    given = set(processes.PROCESS_SECRETS[process])
    needs = PROCESS_NEEDS[process]
    # Every secret it needs is given, the S3 pair exactly when it uses the store ...
    assert needs - NOT_SECRET <= given
    assert (given >= S3_KEYS) == ("KAVE_OBJECT_STORE" in needs)
    # ... and nothing else.
    assert given - S3_KEYS <= needs


def test_both_policies_check_against_the_one_table() -> None:
    assert compose_privilege.PROCESS_SECRETS is processes.PROCESS_SECRETS
    assert deploy_policy.PROCESS_SECRETS is processes.PROCESS_SECRETS


def test_the_receiver_needs_neither_the_database_nor_the_jwt_key() -> None:
    assert not {"KAVE_DATABASE_URL", "KAVE_JWT_SECRET_KEY"} & PROCESS_NEEDS["receiver"]
    assert PROCESS_NEEDS["beat"] == {"KAVE_REDIS_URL"}


# --- compose ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize("process", PROCESSES)
def test_each_compose_service_starts_with_its_environment_alone(
    process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = compose_environment(process)
    settings = settings_from(environment, monkeypatch)
    assert settings.env == "production"
    assert settings.process == process


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize(
    ("process", "variable"),
    [
        (process, variable)
        for process in PROCESSES
        for variable in sorted(processes.PROCESS_SECRETS[process] - S3_KEYS)
    ],
)
def test_each_compose_service_refuses_to_start_without_one_of_its_secrets(
    process: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = compose_environment(process)
    del environment[variable]
    with pytest.raises(ValidationError, match=variable):
        settings_from(environment, monkeypatch)


@pytest.mark.usefixtures("clean_environment")
def test_without_kave_process_the_receivers_environment_is_not_enough(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One process that does everything ("all") still demands every secret."""
    environment = compose_environment("receiver")
    del environment["KAVE_PROCESS"]
    with pytest.raises(ValidationError) as caught:
        settings_from(environment, monkeypatch)
    assert "production settings missing: KAVE_DATABASE_URL" in str(caught.value)


@pytest.mark.usefixtures("clean_environment")
def test_a_secret_a_process_does_not_need_is_still_refused_when_weak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment = compose_environment("beat") | {"KAVE_JWT_SECRET_KEY": "change-me"}
    with pytest.raises(ValidationError, match="KAVE_JWT_SECRET_KEY is a placeholder"):
        settings_from(environment, monkeypatch)


# --- Kubernetes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workloads() -> dict[str, dict[str, str]]:
    """component -> the environment its container gets in the rendered example overlay."""
    docs = rendered_example_overlay()
    configs = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    result: dict[str, dict[str, str]] = {}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        environment: dict[str, str] = {}
        for source in container.get("envFrom", []):
            environment |= configs[source["configMapRef"]["name"]]
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            environment[entry["name"]] = SECRET_VALUES[ref["key"]] if ref else entry["value"]
        result[deploy_policy.component(doc)] = environment
    return result


@pytest.mark.usefixtures("clean_environment")
@pytest.mark.parametrize("process", PROCESSES)
def test_each_kubernetes_component_starts_with_its_environment_alone(
    process: str, workloads: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = workloads[process]
    settings = settings_from(environment, monkeypatch)
    assert settings.process == process
    given = {name for name in environment if name in SECRET_VALUES}
    assert given == processes.PROCESS_SECRETS[process]


# --- a real receiver -------------------------------------------------------------------------


def receiver_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "receiver.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--no-proxy-headers",
    ]


def process_environment(environment: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KAVE_", "FLOWER_"))}
    return base | {"PYTHONPATH": str(ROOT)} | environment


def test_a_receiver_starts_in_production_with_the_compose_receivers_environment(
    tmp_path: Path,
) -> None:
    """Its services are not there (Redis, MinIO): it starts anyway, and says it is not
    ready, instead of refusing for want of a database URL or a JWT key it never reads."""
    environment = compose_environment("receiver")
    assert "KAVE_DATABASE_URL" not in environment
    assert "KAVE_JWT_SECRET_KEY" not in environment
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "receiver.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            receiver_command(port),
            cwd=tmp_path,
            env=process_environment(environment),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:

        def answers() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(base + "/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, 60, "the receiver")
        assert httpx.get(base + "/readyz", timeout=10).status_code == 503
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_receiver_without_kave_process_refuses_that_environment(tmp_path: Path) -> None:
    environment = compose_environment("receiver")
    del environment["KAVE_PROCESS"]
    result = subprocess.run(
        receiver_command(free_port()),
        check=False,
        cwd=tmp_path,
        env=process_environment(environment),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "KAVE_DATABASE_URL" in result.stdout + result.stderr


def test_a_receiver_told_it_is_another_process_refuses_to_start(tmp_path: Path) -> None:
    # beat demands no metrics token: a receiver that believed it would serve /metrics open.
    environment = compose_environment("receiver") | {"KAVE_PROCESS": "beat"}
    result = subprocess.run(
        receiver_command(free_port()),
        check=False,
        cwd=tmp_path,
        env=process_environment(environment),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "KAVE_PROCESS=beat" in output
    assert "KAVE_METRICS_TOKEN" in output


@pytest.mark.parametrize("process", sorted(set(PROCESS_NEEDS) - {"all"}))
def test_each_process_refuses_a_kave_process_that_demands_less_than_it_reads(
    process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(compose_environment("beat"), monkeypatch)
    if PROCESS_NEEDS[process] <= PROCESS_NEEDS["beat"]:
        settings.require_process(process)  # type: ignore[arg-type]
    else:
        with pytest.raises(SettingsError, match="KAVE_PROCESS=beat"):
            settings.require_process(process)  # type: ignore[arg-type]
    # Outside production nothing is demanded, so nothing is refused.
    monkeypatch.setenv("KAVE_ENV", "development")
    settings_from(
        compose_environment("beat") | {"KAVE_ENV": "development"}, monkeypatch
    ).require_process(process)  # type: ignore[arg-type]
