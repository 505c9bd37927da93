"""The production compose file and .env.example hold no usable secret.

scripts/check_containers_policy.py is Kave's own rule book for docker-compose.yml (run
by `scripts/check-containers`, part of `make lint`; its rules in scripts/kave_policy).
These tests show that its secret rules pass on the real file and catch each way a
secret can be weakened: a Redis without --requirepass, a password with a default, a
password written literally, a URL without the password, two copies of one password
that differ. And that every secret in .env.example is one that production refuses.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from shared.secret_strength import (
    PASSWORD_MIN_LENGTH,
    SIGNING_KEY_MIN_LENGTH,
    url_password,
    weakness,
)
from shared.settings import Settings
from tests.ops.support import ROOT, policy_module

compose = policy_module("compose")
compose_services = policy_module("compose_services")
compose_privilege = policy_module("compose_privilege")
compose_values = policy_module("values")
dockerfiles = policy_module("dockerfiles")
processes = policy_module("processes")


def raw_compose() -> Any:
    return compose_values.load_yaml(ROOT / "docker-compose.yml")


def resolve(text: str, values: dict[str, str]) -> Any:
    """What `docker compose config` does to the variables, for these values."""

    def substitute(match: re.Match[str]) -> str:
        name, modifier = match.group(1), match.group(2)
        if name in values:
            return values[name]
        if modifier.startswith(":-"):
            return modifier[2:]
        raise AssertionError(f"{name} has no value and no default")

    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}", substitute, "\n".join(lines))
    return yaml.safe_load(text.replace("$$", "$"))


def findings(doc: Any, *, raw: bool) -> list[str]:
    result = compose_values.Findings()
    compose.check_compose(doc, "compose", result, raw=raw)
    return list(result.items)


VALUES = {
    name: f"{name.lower().replace('_', '-')}-Xq7v2Lm9"
    for name in (
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "KAVE_S3_ACCESS_KEY_ID",
        "KAVE_S3_SECRET_ACCESS_KEY",
        "KAVE_MANDRILL_WEBHOOK_KEYS",
        "KAVE_JWT_SECRET_KEY",
        "KAVE_METRICS_TOKEN",
    )
} | {
    "FLOWER_BASIC_AUTH": "ops:flower-Xq7v2Lm9",
    "KAVE_MANDRILL_WEBHOOK_URLS": "https://kave.example.invalid/hook",
}


def test_the_compose_file_passes_every_rule_as_written_and_resolved() -> None:
    assert findings(raw_compose(), raw=True) == []
    text = (ROOT / "docker-compose.yml").read_text()
    assert findings(resolve(text, VALUES), raw=False) == []


def test_redis_runs_with_the_password_every_kave_url_carries() -> None:
    doc = resolve((ROOT / "docker-compose.yml").read_text(), VALUES)
    redis = doc["services"]["redis"]
    argv = compose_values.as_argv(redis["command"])
    assert compose_values.option_value(argv, "--requirepass") == VALUES["REDIS_PASSWORD"]
    assert redis["environment"]["REDISCLI_AUTH"] == VALUES["REDIS_PASSWORD"]
    kave_services = compose_services.KAVE_SERVICES
    readers = [n for n in kave_services if "KAVE_REDIS_URL" in processes.PROCESS_SECRETS[n]]
    assert set(kave_services) - set(readers) == {"migrate"}
    for name in readers:
        url = doc["services"][name]["environment"]["KAVE_REDIS_URL"]
        assert url_password(url) == VALUES["REDIS_PASSWORD"], name


def test_every_secret_is_required_from_env() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in compose_privilege.SECRET_VARIABLES:
        assert "${" + name + ":?" in text, name
        values = {k: v for k, v in VALUES.items() if k != name}
        with pytest.raises(AssertionError, match=name):
            resolve(text, values)


def mutated(change: Any) -> list[str]:
    doc = copy.deepcopy(raw_compose())
    change(doc["services"])
    return findings(doc, raw=True)


def drop_requirepass(services: dict[str, Any]) -> None:
    argv = services["redis"]["command"]
    index = argv.index("--requirepass")
    del argv[index : index + 2]


def default_the_redis_password(services: dict[str, Any]) -> None:
    argv = services["redis"]["command"]
    argv[argv.index("--requirepass") + 1] = "${REDIS_PASSWORD:-devpass}"


def literal_postgres_password(services: dict[str, Any]) -> None:
    services["postgres"]["environment"]["POSTGRES_PASSWORD"] = "hunter2hunter2hunter2"


def optional_minio_password(services: dict[str, Any]) -> None:
    services["minio"]["environment"]["MINIO_ROOT_PASSWORD"] = "${KAVE_S3_SECRET_ACCESS_KEY}"


def redis_url_without_password(services: dict[str, Any]) -> None:
    services["receiver"]["environment"] = {
        **services["receiver"]["environment"],
        "KAVE_REDIS_URL": "redis://redis:6379/0",
    }


def literal_password_in_a_url(services: dict[str, Any]) -> None:
    services["worker"]["environment"] = {
        **services["worker"]["environment"],
        "KAVE_DATABASE_URL": "postgresql+psycopg://kave:change-me@postgres:5432/kave",
    }


@pytest.mark.parametrize(
    ("change", "finding"),
    [
        (drop_requirepass, "services.redis: needs --requirepass ${REDIS_PASSWORD:?...}"),
        (default_the_redis_password, "a secret must be required with ${REDIS_PASSWORD:?...}"),
        (literal_postgres_password, "environment.POSTGRES_PASSWORD: write the secret as"),
        (
            optional_minio_password,
            "a secret must be required with ${KAVE_S3_SECRET_ACCESS_KEY:?...}",
        ),
        (
            redis_url_without_password,
            "services.receiver: KAVE_REDIS_URL must be redis://:PASSWORD@",
        ),
        (literal_password_in_a_url, "environment.KAVE_DATABASE_URL: write the secret as"),
    ],
)
def test_the_policy_catches_each_weakened_secret(change: Any, finding: str) -> None:
    found = mutated(change)
    assert any(finding in item for item in found), found


def test_the_policy_catches_passwords_that_differ_between_server_and_client() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    doc = resolve(text, VALUES)
    doc["services"]["redis"]["environment"]["REDISCLI_AUTH"] = "other"
    argv = doc["services"]["redis"]["command"]
    argv[argv.index("--requirepass") + 1] = "another-Xq7v2Lm9-password"
    found = findings(doc, raw=False)
    assert any("the password in KAVE_REDIS_URL must be redis --requirepass" in f for f in found)
    assert any("REDISCLI_AUTH must be the --requirepass password" in f for f in found)


# --- .env.example ----------------------------------------------------------------------


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_env_example_holds_no_usable_secret() -> None:
    values = env_example()
    for name in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "KAVE_S3_SECRET_ACCESS_KEY"):
        assert weakness(values[name], min_length=PASSWORD_MIN_LENGTH), name
    assert weakness(values["KAVE_JWT_SECRET_KEY"], min_length=SIGNING_KEY_MIN_LENGTH)
    flower_password = values["FLOWER_BASIC_AUTH"].rpartition(":")[2]
    assert weakness(flower_password, min_length=PASSWORD_MIN_LENGTH)
    for name in ("KAVE_DATABASE_URL", "KAVE_REDIS_URL"):
        assert weakness(url_password(values[name]), min_length=PASSWORD_MIN_LENGTH), name
    assert "secrets.token_urlsafe(32)" in (ROOT / ".env.example").read_text()


def test_env_example_as_is_does_not_start_in_production() -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=ROOT / ".env.example")
    # Even with everything that is not a secret filled in, it is the secrets that stop it.
    example = env_example()
    strong = "Vq7xK2mZ9pL4sT8wN3bR6yH1cJ5dF0gA"
    with pytest.raises(ValidationError) as caught:
        Settings(
            _env_file=ROOT / ".env.example",
            mandrill_webhook_keys="k",
            jwt_secret_key=strong,
            s3_secret_access_key=strong[::-1],
        )
    message = str(caught.value)
    assert "KAVE_DATABASE_URL's password is a placeholder" in message
    assert "KAVE_REDIS_URL's password is a placeholder" in message
    assert example["KAVE_ENV"] == "production"


@pytest.mark.parametrize("line", ["ENV REDIS_PASSWORD=x", "ARG KAVE_JWT_SECRET_KEY"])
def test_the_policy_keeps_secrets_out_of_the_images(tmp_path: Path, line: str) -> None:
    for name in ("Dockerfile.receiver", "Dockerfile.api", "Dockerfile.worker"):
        clean = compose_values.Findings()
        dockerfiles.check_dockerfile(ROOT / name, name.split(".")[1], clean)
        assert clean.items == []
        dockerfile = tmp_path / name
        dockerfile.write_text((ROOT / name).read_text() + f"\n{line}\n")
        found = compose_values.Findings()
        dockerfiles.check_dockerfile(dockerfile, name.split(".")[1], found)
        assert any("no secret in the image" in item for item in found.items), found.items
