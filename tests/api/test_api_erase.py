"""DELETE /api/v1/emails/{id}: erasure by an admin user, refused to everyone else."""

from __future__ import annotations

from collections.abc import Callable

import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from shared.contract import payload_redis_key
from shared.models import Attachment, Email, Erasure, User
from shared.settings import Settings
from tests.api.conftest import Rows, get_token
from tests.services import derive_settings


def test_only_admins_erase_and_shared_attachments_stay_until_the_last_email(
    make_client: Callable[..., TestClient],
    api_settings: Settings,
    make_user: Callable[..., User],
    rows: Rows,
    clean_db: Engine,
    *,
    redis_client: redis.Redis,
) -> None:
    client = make_client(derive_settings(api_settings, orphan_grace_seconds=0))
    make_user("ops")
    admin = make_user("boss", admin=True)
    ops = {"Authorization": f"Bearer {get_token(client, 'ops')}"}
    boss = {"Authorization": f"Bearer {get_token(client, 'boss')}"}
    shared = ("report.pdf", "application/pdf", b"%PDF shared content")
    first = rows.email(attachments=[shared])
    second = rows.email(attachments=[shared])
    with Session(clean_db) as session:
        key = session.scalars(
            select(Attachment.object_key).where(Attachment.email_id == first.id)
        ).one()

    assert client.delete(f"/api/v1/emails/{first.id}").status_code == 401
    refused = client.delete(f"/api/v1/emails/{first.id}", headers=ops)
    assert refused.status_code == 403
    assert "admin" in refused.json()["message"]
    assert client.get(f"/api/v1/emails/{first.id}", headers=ops).status_code == 200

    # A copy of the batch body the receiver left in Redis (as after a dead letter).
    redis_client.set(payload_redis_key(first.delivery_id), b"mandrill_events=...")
    erased = client.delete(f"/api/v1/emails/{first.id}", headers=boss)
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["emails"] == 1
    assert body["attachments"] == 1
    assert body["objects_still_referenced"] == 1  # the second email's attachment
    assert body["objects_deferred"] == 0
    assert client.get(f"/api/v1/emails/{first.id}", headers=ops).status_code == 404
    assert not rows.store.exists(first.raw_key)
    assert not redis_client.exists(payload_redis_key(first.delivery_id))
    assert rows.store.exists(key)
    attachment = client.get(f"/api/v1/emails/{second.id}", headers=ops).json()["attachments"][0]
    assert client.get(attachment["content_url"], headers=ops).content == shared[2]
    assert client.delete(f"/api/v1/emails/{first.id}", headers=boss).status_code == 404

    assert client.delete(f"/api/v1/emails/{second.id}", headers=boss).status_code == 200
    assert not rows.store.exists(key)
    with Session(clean_db) as session:
        records = session.scalars(select(Erasure).order_by(Erasure.id)).all()
    assert [r.actor for r in records] == [f"api:user:{admin.id}"] * 2
    assert [r.selector_kind for r in records] == ["email", "email"]


def test_downloads_removed_by_retention_say_so(
    client: TestClient, auth: dict[str, str], rows: Rows, clean_db: Engine
) -> None:
    email = rows.email(attachments=[("a.txt", "text/plain", b"old")])
    with Session(clean_db) as session, session.begin():
        session.execute(update(Email).values(raw_removed_at=func.now()))
        session.execute(update(Attachment).values(content_removed_at=func.now()))
    raw = client.get(f"/api/v1/emails/{email.id}/raw", headers=auth)
    assert raw.status_code == 404
    assert "removed by the retention policy" in raw.json()["message"]
    detail = client.get(f"/api/v1/emails/{email.id}", headers=auth).json()
    content = client.get(detail["attachments"][0]["content_url"], headers=auth)
    assert content.status_code == 404
    assert "removed by the retention policy" in content.json()["message"]
