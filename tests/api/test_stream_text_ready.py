"""``email.text_ready`` on GET /api/v1/stream, over mail that went the whole way: a signed
webhook through the uvicorn receiver, a real Celery worker serving the mail and the text
queues (conversions in their own child processes), then the uvicorn API read with a
mailbox-scoped key that disconnects and reconnects with Last-Event-ID. And
``kave reprocess --text`` as a real process: the text converted again, and the feed
saying so."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from api.stream.position import Position
from loadkit import documents
from loadkit.feed_client import FeedReader
from loadkit.hostile_mail import inbound_event
from shared.models import Attachment, Email
from shared.settings import Settings
from tests import services
from tests.api.agents import SUPPORT, make_key
from tests.kave.support import kave_with_settings
from tests.webhooks import post_events, wait_for_deliveries
from worker.text.convert import extractor

pytestmark = pytest.mark.usefixtures("clean_db")

BOTH = ("email.received", "email.text_ready")


@pytest.fixture(scope="module")
def text_settings(database_url: str, redis_url: str, s3_endpoint: str) -> Settings:
    return services.pipeline_settings(
        database_url,
        redis_url,
        s3_endpoint,
        queue_name=f"kave-feed-text-{uuid.uuid4().hex[:8]}",
        text_enabled=True,
    )


@pytest.fixture(scope="module")
def text_receiver(text_settings: Settings, service_dir: Path) -> Iterator[str]:
    """A receiver and a worker (two processes, mail and text queues) with text on."""
    with (
        services.worker_process(text_settings, service_dir / "feed-text-worker.log"),
        services.receiver_process(text_settings, service_dir / "feed-text-receiver.log") as base,
    ):
        yield base


def _mail(ident: str, recipient: str, files: list[tuple[str, str, bytes]]) -> dict[str, object]:
    msg = EmailMessage()
    msg["From"] = "Ana Lima <ana@example.org>"
    msg["To"] = recipient
    msg["Subject"] = f"Papers {ident}"
    msg["Message-ID"] = f"<{ident}@example.org>"
    msg.set_content("The papers are attached.\n")
    for name, content_type, data in files:
        main, sub = content_type.split("/", 1)
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return inbound_event(msg.as_string(), recipient)


def _pdf(line: str) -> tuple[str, str, bytes]:
    return (
        f"{line.split(maxsplit=1)[0].lower()}.pdf",
        "application/pdf",
        documents.pdf([documents.text_page(line)]),
    )


def _send(receiver: str, engine: Engine, *events: dict[str, object]) -> None:
    response = post_events(receiver, json.dumps(list(events)))
    assert response.status_code == 200, response.text
    wait_for_deliveries(engine, [response.json()["delivery_id"]])


def _ids(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {
            str(message_id).strip("<>").split("@")[0]: email_id
            for message_id, email_id in session.execute(select(Email.message_id, Email.id))
        }


def _read_until(reader: FeedReader, wanted: int, timeout: float) -> None:
    """Read one event per connection (a reconnection after each) until ``wanted``."""
    deadline = time.monotonic() + timeout
    while len(reader.log) < wanted and time.monotonic() < deadline:
        reader.read(1, timeout=max(deadline - time.monotonic(), 1), counted=BOTH)


def test_text_ready_follows_the_emails_that_wait_for_text_scoped_and_resumed(
    text_receiver: str, agent_api: str, clean_db: Engine
) -> None:
    key = make_key(clean_db, "text-agent", mailboxes=(SUPPORT,))
    reader = FeedReader(agent_api, key.headers)
    reader.read(0, timeout=10)  # the ready event: where the feed starts
    _send(
        text_receiver,
        clean_db,
        # Two documents: two conversions, which may commit in either order.
        _mail(
            "both",
            "support+a@example.com",
            [_pdf("Invoice 4711 for ACME"), _pdf("Contract of sale")],
        ),
        _mail("other", "sales@example.com", [_pdf("Quote 99 for sales")]),
        _mail("plain", "support+c@example.com", []),
        _mail(
            "image",
            "support+d@example.com",
            [("logo.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(64))],
        ),
    )
    ids = _ids(clean_db)
    _read_until(reader, 4, timeout=60)
    # Nothing more comes: the other mailbox's events and no repeat.
    reader.read(1, timeout=3, counted=BOTH)

    kinds = [(kind, data["email_id"]) for kind, _, data in reader.log]
    assert sorted(kinds) == sorted(
        [
            ("email.received", ids["both"]),
            ("email.received", ids["plain"]),
            ("email.received", ids["image"]),
            ("email.text_ready", ids["both"]),
        ]
    )
    assert reader.connections >= 4
    # In the feed's order, the text after its email.
    positions = [Position.parse(str(event_id)) for _, event_id, _ in reader.log]
    assert positions == sorted(positions)
    assert kinds.index(("email.text_ready", ids["both"])) > kinds.index(
        ("email.received", ids["both"])
    )
    received = {data["email_id"]: data for kind, _, data in reader.log if kind == "email.received"}
    assert received[ids["both"]]["awaits_text"] is True
    assert received[ids["plain"]]["awaits_text"] is False
    assert received[ids["image"]]["awaits_text"] is False  # skipped:type when stored

    (ready,) = [data for kind, _, data in reader.log if kind == "email.text_ready"]
    assert ready["envelope_recipient"] == "support+a@example.com"
    assert [a["filename"] for a in ready["attachments"]] == ["invoice.pdf", "contract.pdf"]
    assert {a["text_status"] for a in ready["attachments"]} == {"ready"}
    with httpx.Client(base_url=agent_api, headers=key.headers, timeout=10) as client:
        text = client.get(ready["attachments"][0]["text_url"])
        assert text.status_code == 200
        assert "Invoice 4711 for ACME" in text.text
        # The conversation view reads the same column.
        thread = client.get(f"/api/v1/conversations/{ready['conversation_id']}").json()
    statuses = [a["text_status"] for a in thread["emails"][0]["attachments"]]
    assert statuses == ["ready", "ready"]


def test_reprocess_text_converts_again_and_the_feed_says_so(
    text_receiver: str, text_settings: Settings, agent_api: str, clean_db: Engine
) -> None:
    key = make_key(clean_db, "reprocess-agent")
    reader = FeedReader(agent_api, key.headers)
    reader.read(0, timeout=10)
    _send(
        text_receiver, clean_db, _mail("again", "inbox@example.com", [_pdf("Agreement 12 signed")])
    )
    _read_until(reader, 2, timeout=60)
    assert [kind for kind, _, _ in reader.log] == list(BOTH)
    # As an older extractor would have left it.
    with Session(clean_db) as session, session.begin():
        session.execute(update(Attachment).values(text_extractor="kreuzberg 0.0.1"))

    dry = kave_with_settings(["reprocess", "--text", "--dry-run"], text_settings)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would convert 1 attachment contents again" in dry.stdout
    with Session(clean_db) as session:
        assert session.scalar(select(Attachment.text_extractor)) == "kreuzberg 0.0.1"

    done = kave_with_settings(["reprocess", "--text"], text_settings)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "queued 1 attachment contents for conversion" in done.stdout
    _read_until(reader, 3, timeout=60)
    with Session(clean_db) as session:
        row = session.execute(select(Attachment.text_status, Attachment.text_extractor)).one()
    assert tuple(row) == ("ready", extractor())
    kinds = [kind for kind, _, _ in reader.log]
    assert kinds == ["email.received", "email.text_ready", "email.text_ready"]
    first, second = (Position.parse(str(i)) for k, i, _ in reader.log if k == "email.text_ready")
    assert second > first
    # Nothing older is left: a second run queues nothing.
    again = kave_with_settings(["reprocess", "--text"], text_settings)
    assert "queued 0 attachment contents for conversion" in again.stdout
