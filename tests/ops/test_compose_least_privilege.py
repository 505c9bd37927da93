"""Least privilege in docker-compose.yml and the Dockerfiles, and the policy would notice.

scripts/check_containers_policy.py (run by `scripts/check-containers`, part of
`make lint`) holds these rules: each Kave service gets only the secrets its process reads
and says which process it is; no container is handed .env whole; every container has a
memory limit, a read-only root with a tmpfs where it writes, no capabilities and
no-new-privileges; uvicorn never rewrites the client address from X-Forwarded-For; pinned
requirements install only with their hashes. Each test plants one violation in a copy
and expects the finding that names it.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.ops.support import ROOT, load_script, policy_module
from tests.ops.test_compose_secrets import VALUES, findings, raw_compose, resolve

policy = load_script("check_containers_policy")
compose_privilege = policy_module("compose_privilege")
compose_services = policy_module("compose_services")
compose_values = policy_module("values")
dockerfiles = policy_module("dockerfiles")

Services = dict[str, dict[str, Any]]


def planted(change: Callable[[Services], None]) -> list[str]:
    doc = copy.deepcopy(raw_compose())
    change(doc["services"])
    return findings(doc, raw=True)


def set_env(service: str, **values: str) -> Callable[[Services], None]:
    def change(services: Services) -> None:
        services[service]["environment"] = {**services[service]["environment"], **values}

    return change


def drop_env(service: str, name: str) -> Callable[[Services], None]:
    def change(services: Services) -> None:
        environment = dict(services[service]["environment"])
        del environment[name]
        services[service]["environment"] = environment

    return change


def set_key(service: str, key: str, value: Any) -> Callable[[Services], None]:
    def change(services: Services) -> None:
        services[service][key] = value

    return change


def drop_key(service: str, key: str) -> Callable[[Services], None]:
    def change(services: Services) -> None:
        del services[service][key]

    return change


def without_no_proxy_headers(service: str) -> Callable[[Services], None]:
    def change(services: Services) -> None:
        services[service]["command"] = [
            arg for arg in services[service]["command"] if arg != "--no-proxy-headers"
        ]

    return change


DATABASE_URL = "postgresql+psycopg://kave:${POSTGRES_PASSWORD:?x}@postgres:5432/kave"


@pytest.mark.parametrize(
    ("change", "finding"),
    [
        # Each service only the settings it reads.
        (
            set_env("receiver", KAVE_DATABASE_URL=DATABASE_URL),
            "services.receiver: gets KAVE_DATABASE_URL, which receiver does not read",
        ),
        (
            set_env("receiver", KAVE_JWT_SECRET_KEY="${KAVE_JWT_SECRET_KEY:?x}"),
            "services.receiver: gets KAVE_JWT_SECRET_KEY, which receiver does not read",
        ),
        (
            set_env("beat", KAVE_S3_SECRET_ACCESS_KEY="${KAVE_S3_SECRET_ACCESS_KEY:?x}"),
            "services.beat: gets KAVE_S3_SECRET_ACCESS_KEY, which beat does not read",
        ),
        (
            set_env("flower", KAVE_DATABASE_URL=DATABASE_URL),
            "services.flower: gets KAVE_DATABASE_URL, which flower does not read",
        ),
        (
            drop_env("api", "KAVE_JWT_SECRET_KEY"),
            "services.api: KAVE_JWT_SECRET_KEY is missing (api refuses to start without it)",
        ),
        (drop_env("worker", "KAVE_PROCESS"), "services.worker: set KAVE_PROCESS: worker"),
        (
            set_env("receiver", KAVE_PROCESS="all"),
            "services.receiver: set KAVE_PROCESS: receiver",
        ),
        (
            set_key("receiver", "env_file", [{"path": ".env", "required": False}]),
            "services.receiver: env_file .env: hands every variable in it to the container",
        ),
        (
            set_key("beat", "env_file", ["kave.env", "handoff.env"]),
            "services.beat: env_file handoff.env",
        ),
        # Memory, read-only root, capabilities, privileges.
        (drop_key("receiver", "mem_limit"), "services.receiver: needs a memory limit"),
        (drop_key("postgres", "mem_limit"), "services.postgres: needs a memory limit"),
        (set_key("worker", "read_only", False), "services.worker: needs read_only: true"),
        (drop_key("redis", "read_only"), "services.redis: needs read_only: true"),
        (drop_key("beat", "tmpfs"), "services.beat: needs a tmpfs on /tmp"),
        (drop_key("api", "cap_drop"), "services.api: needs cap_drop: [ALL]"),
        (set_key("minio", "cap_drop", ["NET_RAW"]), "services.minio: needs cap_drop: [ALL]"),
        (
            set_key("receiver", "cap_add", ["NET_ADMIN"]),
            "services.receiver: cap_add ['NET_ADMIN']: not needed",
        ),
        (
            set_key("postgres", "cap_add", ["CHOWN", "SYS_ADMIN"]),
            "services.postgres: cap_add ['SYS_ADMIN']: not needed",
        ),
        (
            drop_key("flower", "security_opt"),
            'services.flower: needs security_opt: ["no-new-privileges:true"]',
        ),
        (
            set_key("migrate", "security_opt", ["no-new-privileges:false"]),
            'services.migrate: needs security_opt: ["no-new-privileges:true"]',
        ),
        # Each process its own image: the public receiver's carries nothing of the API.
        (
            set_key("api", "image", "kave-receiver:${KAVE_IMAGE_TAG:-latest}"),
            "services.api: must run image kave-api, built from Dockerfile.api",
        ),
        (
            set_key("api", "build", {"context": ".", "dockerfile": "Dockerfile.receiver"}),
            "services.api: must run image kave-api, built from Dockerfile.api",
        ),
        # The client address: uvicorn must not rewrite it.
        (without_no_proxy_headers("receiver"), "services.receiver: run uvicorn with --no-proxy"),
        (without_no_proxy_headers("api"), "services.api: run uvicorn with --no-proxy-headers"),
    ],
)
def test_the_policy_catches_each_planted_violation(
    change: Callable[[Services], None], finding: str
) -> None:
    found = planted(change)
    assert any(finding in item for item in found), found


def test_the_receiver_gets_neither_the_database_nor_the_jwt_key() -> None:
    """As compose resolves it: what the container's environment really holds."""
    services = resolve((ROOT / "docker-compose.yml").read_text(), VALUES)["services"]
    receiver = services["receiver"]["environment"]
    for name in ("KAVE_DATABASE_URL", "KAVE_JWT_SECRET_KEY", "FLOWER_BASIC_AUTH"):
        assert name not in receiver
    assert VALUES["POSTGRES_PASSWORD"] not in str(services["receiver"])
    assert VALUES["KAVE_JWT_SECRET_KEY"] not in str(services["receiver"])
    assert VALUES["KAVE_JWT_SECRET_KEY"] not in str({n: services[n] for n in ("worker", "beat")})
    for name in compose_services.KAVE_SERVICES:
        assert ".env" not in compose_values.env_file_paths(services[name]), name


def test_a_memory_limit_must_resolve_to_a_size() -> None:
    doc = resolve((ROOT / "docker-compose.yml").read_text(), VALUES)
    doc["services"]["worker"]["mem_limit"] = "lots"
    found = findings(doc, raw=False)
    assert any("services.worker: mem_limit resolved to 'lots', not a size" in f for f in found)


def copy_root(tmp_path: Path) -> Path:
    for name in (
        "docker-compose.yml",
        "docker-compose.redis-ha.yml",
        "Dockerfile.receiver",
        "Dockerfile.api",
        "Dockerfile.worker",
        ".dockerignore",
    ):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def dockerfile_findings(tmp_path: Path, image: str, old: str, new: str) -> list[str]:
    """The policy's findings on Dockerfile.<image> with ``old`` replaced by ``new`` (the
    copy passes before the change)."""
    root = copy_root(tmp_path)
    assert policy.main(["--root", str(root)]) == 0
    dockerfile = root / f"Dockerfile.{image}"
    text = dockerfile.read_text()
    assert old in text
    dockerfile.write_text(text.replace(old, new))
    found = compose_values.Findings()
    dockerfiles.check_dockerfile(dockerfile, image, found)
    return found.items


@pytest.mark.parametrize("image", ["receiver", "api", "worker"])
def test_requirements_install_only_with_their_hashes(tmp_path: Path, image: str) -> None:
    found = dockerfile_findings(
        tmp_path, image, "--require-hashes -r requirements/", "-r requirements/"
    )
    assert any("must use --require-hashes" in item for item in found), found


@pytest.mark.parametrize("image", ["receiver", "api"])
@pytest.mark.parametrize(
    "ending",
    ["]", ', "--no-proxy-headers", "--forwarded-allow-ips", "*"]'],
    ids=["left-out", "undone"],
)
def test_the_web_images_run_uvicorn_without_proxy_headers(
    tmp_path: Path, image: str, ending: str
) -> None:
    found = dockerfile_findings(tmp_path, image, ', "--no-proxy-headers"]', ending)
    assert any("run uvicorn with --no-proxy-headers" in item for item in found), found


@pytest.mark.parametrize(
    ("image", "line"),
    [
        ("receiver", "COPY api/ api/"),
        ("receiver", "COPY worker/ worker/"),
        ("receiver", "COPY migrations/ migrations/"),
        ("api", "COPY receiver/ receiver/"),
        ("api", "COPY . ."),
    ],
)
def test_each_image_carries_only_its_own_packages(tmp_path: Path, image: str, line: str) -> None:
    copy_shared = "COPY shared/ shared/"
    found = dockerfile_findings(tmp_path, image, copy_shared, f"{copy_shared}\n{line}")
    assert any("this image needs" in item for item in found), found


@pytest.mark.parametrize(
    ("line", "finding"),
    [
        ("KAVE_JWT_SECRET_KEY=x", "KAVE_JWT_SECRET_KEY reaches every Kave container"),
        ("KAVE_DATABASE_URL=postgresql://db/kave", "KAVE_DATABASE_URL reaches every"),
        ("KAVE_HANDOFF_SECRET_PLATFORM=whsec_x", "belongs to handoff.env"),
    ],
)
def test_the_tuning_env_file_holds_no_secret(tmp_path: Path, line: str, finding: str) -> None:
    root = copy_root(tmp_path)
    (root / "kave.env").write_text("# tuning\nKAVE_MAX_FORM_FIELDS=8\n")
    assert policy.main(["--root", str(root)]) == 0
    (root / "kave.env").write_text(f"KAVE_MAX_FORM_FIELDS=8\n{line}\n")
    found = compose_values.Findings()
    compose_privilege.check_tuning_env_file(root / "kave.env", found)
    assert any(finding in item for item in found.items), found.items
