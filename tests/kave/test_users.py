"""``kave users create`` and ``kave users disable``, run as real processes against the
session's database, then checked through the token endpoint of the real app."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.app import create_app
from shared.models import User
from shared.settings import Settings
from tests.kave.support import kave
from tests.services import child_env, derive_settings

PASSWORD = "ivory lantern drifts past nine"
TOKEN = "/api/v1/auth/token"


def kave_users(
    args: list[str], settings: Settings, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return kave(["users", *args], child_env(settings), stdin=stdin)


@pytest.fixture
def client(base_settings: Settings, clean_db: Engine) -> Iterator[TestClient]:
    # A queue name of its own: rate-limit buckets are kept per queue name.
    settings = derive_settings(base_settings, queue_name=f"kave-users-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _token_status(client: TestClient, password: str = PASSWORD) -> int:
    return client.post(TOKEN, data={"username": "ops", "password": password}).status_code


def test_create_then_disable(client: TestClient, base_settings: Settings, clean_db: Engine) -> None:
    created = kave_users(["create", "ops"], base_settings, stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    assert "user ops created" in created.stdout
    assert PASSWORD not in created.stdout + created.stderr
    with Session(clean_db) as session:
        user = session.scalars(select(User).where(User.name == "ops")).one()
    assert user.password_hash.startswith("$2b$12$")
    assert user.role == "operator"
    assert PASSWORD not in user.password_hash
    assert _token_status(client) == 200
    assert _token_status(client, "ivory lantern drifts past ninE") == 401

    again = kave_users(["create", "ops"], base_settings, stdin="quartz meadow folds seven kites\n")
    assert again.returncode == 1
    assert "exists already" in again.stderr

    disabled = kave_users(["disable", "ops"], base_settings)
    assert disabled.returncode == 0, disabled.stderr
    assert _token_status(client) == 401


def test_create_admin(base_settings: Settings, clean_db: Engine) -> None:
    created = kave_users(["create", "--admin", "boss"], base_settings, stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    assert "admin user boss created" in created.stdout
    with Session(clean_db) as session:
        assert session.scalars(select(User.role).where(User.name == "boss")).one() == "admin"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["create", "ops"], "é" * 37 + "\n", "limited to 72 bytes"),
        (["create", "ops"], "k7#Qv2m\n", "is too short (at least 16 characters)"),
        (["create", "ops"], "", "is empty"),
        (["create", "ops"], "correct-horse-password\n", "is a placeholder"),
        (["create", "ops"], "P@ssw0rd-for-the-api\n", "is a placeholder"),
        (["create", "ops"], "abababababababab\n", "too few different characters"),
        (["create", "ops"], "abcdefghijklmnopqrs\n", "is a simple sequence"),
        (["create", "ops"], "ab1Z?-ab1Z?-ab1Z?-\n", "repeats a short pattern"),
        (["create", "operator"], "operator-lantern-drift\n", "contains the user name"),
        (["create", "-bad name"], PASSWORD + "\n", "invalid user name"),
        (["disable", "nobody"], "", "no user 'nobody'"),
    ],
)
def test_refusals_say_why_and_change_nothing(
    base_settings: Settings, clean_db: Engine, args: list[str], stdin: str, message: str
) -> None:
    result = kave_users(args, base_settings, stdin=stdin)
    assert result.returncode != 0
    assert message in result.stderr
    if stdin.strip():
        assert stdin.strip() not in result.stdout + result.stderr  # never echoed
    with Session(clean_db) as session:
        assert session.scalars(select(User)).all() == []
