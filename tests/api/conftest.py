"""Fixtures of the management API tests: the real app on the session's PostgreSQL, Redis
and S3 server, users, tokens and rows inserted directly."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.app import create_app
from api.auth import hash_password
from shared.models import (
    Attachment,
    DeadLetter,
    Delivery,
    DeliveryEvent,
    Email,
    Event,
    User,
)
from shared.objectstore import S3ObjectStore
from shared.settings import Settings
from tests.api.agents import agent_api, agent_settings  # noqa: F401 - fixtures
from tests.http_checks import app_clients
from tests.services import derive_settings
from worker.ingest.rows import lowered_addresses

PASSWORD = "correct horse battery staple"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def api_settings(base_settings: Settings) -> Settings:
    """The session settings with a queue of the test's own that nobody consumes, so
    replays can be inspected. Rate-limit buckets live under the queue name too, so every
    test starts with empty ones (replicas share them: that is what the name is for)."""
    return derive_settings(base_settings, queue_name=f"kave-api-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def make_client(clean_db: Engine) -> Iterator[Callable[..., TestClient]]:
    with app_clients(create_app) as make:
        yield make


@pytest.fixture
def client(make_client: Callable[..., TestClient], api_settings: Settings) -> TestClient:
    return make_client(api_settings)


@pytest.fixture
def make_user(clean_db: Engine) -> Callable[..., User]:
    def make(
        name: str = "ops",
        password: str = PASSWORD,
        *,
        disabled: bool = False,
        admin: bool = False,
        role: str = "operator",
    ) -> User:
        # 4 rounds: the cost factor is stored in the hash, so verification is as real as
        # with 12, only faster.
        with Session(clean_db, expire_on_commit=False) as session:
            user = User(
                name=name,
                password_hash=hash_password(password, rounds=4),
                disabled=disabled,
                role="admin" if admin else role,
            )
            session.add(user)
            session.commit()
            return user

    return make


def get_token(client: httpx.Client, name: str = "ops", password: str = PASSWORD) -> str:
    """A token from the app in process (TestClient) or the uvicorn process (httpx)."""
    response = client.post("/api/v1/auth/token", data={"username": name, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture
def auth(client: TestClient, make_user: Callable[..., User]) -> dict[str, str]:
    make_user()
    return {"Authorization": f"Bearer {get_token(client)}"}


class Rows:
    """Inserts rows the way the worker would leave them, with chosen timestamps."""

    def __init__(self, engine: Engine, store: S3ObjectStore) -> None:
        self.engine = engine
        self.store = store
        self._serial = itertools.count(1)

    def add(self, *rows: Any) -> None:
        with Session(self.engine, expire_on_commit=False) as session:
            session.add_all(rows)
            session.commit()

    def delivery(self, *, received_at: datetime = T0, status: str = "processed") -> Delivery:
        delivery = Delivery(
            id=str(uuid.uuid4()),
            received_at=received_at,
            request_id=uuid.uuid4().hex,
            body_sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
            body_size=1234,
            archive_key="deliveries/ab/abc",
            status=status,
            event_count=0,
            attempts=1,
        )
        self.add(delivery)
        return delivery

    def email(
        self,
        delivery: Delivery | None = None,
        *,
        received_at: datetime = T0,
        raw: bytes | None = None,
        attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
        **values: Any,
    ) -> Email:
        delivery = delivery or self.delivery(received_at=received_at)
        serial = next(self._serial)
        raw = raw or f"Subject: email {serial}\r\n\r\nbody {serial}\r\n".encode()
        raw_sha256 = hashlib.sha256(raw).hexdigest()
        raw_key = f"messages/{raw_sha256}.eml"
        self.store.put(raw_key, raw, "message/rfc822")
        columns: dict[str, Any] = {
            "dedup_key": hashlib.sha256(f"{serial}-{uuid.uuid4()}".encode()).hexdigest(),
            "message_id": f"<{serial}@example.org>",
            "raw_sha256": raw_sha256,
            "raw_size": len(raw),
            "raw_key": raw_key,
            "envelope_recipient": "inbox@example.com",
            "from_address": f"sender{serial}@example.org",
            "subject": f"email {serial}",
            "to": [{"name": "Inbox", "address": "inbox@example.com"}],
            "delivery_id": delivery.id,
            "received_at": received_at,
            **values,
        }
        # As the worker writes it (worker.ingest.rows.recipient_addresses).
        columns.setdefault(
            "recipient_addresses",
            lowered_addresses(
                [
                    columns["envelope_recipient"],
                    *(a["address"] for a in (*columns["to"], *columns.get("cc", []))),
                ]
            ),
        )
        email = Email(**columns)
        self.add(email)
        for position, (filename, content_type, content) in enumerate(attachments):
            self.attachment(email, position, filename, content_type, content)
        return email

    def attachment(
        self, email: Email, position: int, filename: str, content_type: str, content: bytes
    ) -> Attachment:
        digest = hashlib.sha256(content).hexdigest()
        key = f"attachments/{digest}"
        self.store.put(key, content)
        attachment = Attachment(
            email_id=email.id,
            position=position,
            filename=filename,
            content_type=content_type,
            size=len(content),
            sha256=digest,
            object_key=key,
        )
        self.add(attachment)
        return attachment

    def event(
        self,
        kind: str = "open",
        *,
        created_at: datetime = T0,
        occurred_at: datetime | None = T0,
        recipient: str | None = "customer@example.net",
        delivery: Delivery | None = None,
    ) -> Event:
        delivery = delivery or self.delivery()
        event = Event(
            dedup_key=uuid.uuid4().hex,
            kind=kind,
            occurred_at=occurred_at,
            mandrill_id=uuid.uuid4().hex,
            recipient=recipient,
            payload={"event": kind, "msg": {"email": recipient}},
            delivery_id=delivery.id,
            created_at=created_at,
        )
        self.add(event)
        return event

    def delivery_event(
        self, delivery: Delivery, index: int, outcome: str, **values: Any
    ) -> DeliveryEvent:
        row = DeliveryEvent(
            delivery_id=delivery.id, index=index, kind="inbound", outcome=outcome, **values
        )
        self.add(row)
        return row

    def dead_letter(
        self,
        delivery: Delivery | None = None,
        *,
        event_index: int | None = 0,
        status: str = "open",
        first_seen_at: datetime = T0,
        **values: Any,
    ) -> DeadLetter:
        delivery = delivery or self.delivery()
        columns: dict[str, Any] = {
            "kind": "inbound",
            "error_class": "MessageParseError",
            "message": "raw_msg is missing",
            "traceback": "Traceback (most recent call last): ...",
            "attempts": 1,
            **values,
        }
        row = DeadLetter(
            delivery_id=delivery.id,
            event_index=event_index,
            status=status,
            first_seen_at=first_seen_at,
            last_seen_at=first_seen_at,
            **columns,
        )
        self.add(row)
        return row


@pytest.fixture
def rows(clean_db: Engine, object_store: S3ObjectStore) -> Rows:
    return Rows(clean_db, object_store)


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)
