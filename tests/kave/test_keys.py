"""``kave keys create|list|revoke`` as real processes, checked through the real app: the
key is printed once and stored hashed, it reads only its mailboxes at its own rate, and
revoking it refuses its very next request."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.app import create_app
from shared.agent_keys import key_sha256
from shared.models import ApiKey
from shared.objectstore import S3ObjectStore
from shared.settings import Settings
from tests.api.conftest import Rows
from tests.kave.support import kave
from tests.services import child_env, derive_settings


@pytest.fixture
def client(base_settings: Settings, clean_db: Engine) -> Iterator[TestClient]:
    settings = derive_settings(base_settings, queue_name=f"kave-keys-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def rows(clean_db: Engine, object_store: S3ObjectStore) -> Rows:
    return Rows(clean_db, object_store)


def test_create_read_narrowly_at_its_own_rate_then_revoke(
    client: TestClient, base_settings: Settings, clean_db: Engine, rows: Rows
) -> None:
    env = child_env(base_settings)
    support = rows.email(envelope_recipient="Support+Billing@Example.com")
    rows.email(envelope_recipient="sales@example.com")

    created = kave(
        ["keys", "create", "agent", "--scope", "read", "--mailbox", "support+*@example.com",
         "--expires", "30d", "--rate", "2/minute"],
        env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("kave_")
    assert len(key) > 40
    with Session(clean_db) as session:
        stored = session.scalars(select(ApiKey).where(ApiKey.name == "agent")).one()
    assert stored.key_sha256 == key_sha256(key)
    assert key not in repr(stored.__dict__)
    assert stored.mailboxes == ["support+*@example.com"]

    listed = kave(["keys", "list"], env)
    assert "agent" in listed.stdout
    assert key not in listed.stdout

    headers = {"Authorization": f"Bearer {key}"}
    page = client.get("/api/v1/emails", headers=headers)
    assert page.status_code == 200, page.text
    assert [item["id"] for item in page.json()["items"]] == [support.id]
    assert client.get("/api/v1/deliveries", headers=headers).status_code == 403
    refused = client.get("/api/v1/emails", headers=headers)
    assert refused.status_code == 429  # its own rate: 2 per minute
    assert "key" in refused.json()["message"]

    revoked = kave(["keys", "revoke", "agent"], env)
    assert revoked.returncode == 0, revoked.stderr
    after = client.get("/api/v1/emails", headers=headers)
    assert after.status_code == 401
    assert "revoked" in after.json()["message"]


def test_refusals_say_why(base_settings: Settings, clean_db: Engine) -> None:
    env = child_env(base_settings)
    bad = kave(["keys", "create", "agent", "--mailbox", "no-at-sign", "--expires", "tomorrow"], env)
    assert bad.returncode == 1
    assert "--expires" in bad.stderr or "mailbox pattern" in bad.stderr
    assert kave(["keys", "revoke", "nobody"], env).returncode == 1
