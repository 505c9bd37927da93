"""GET /api/v1/conversations and /conversations/{id} over rows as the worker leaves them."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from shared.models import Attachment
from tests.api.agents import SUPPORT, make_key
from tests.api.conftest import T0, Rows, minutes


def test_threads_in_order_newest_activity_first_and_scoped(
    client: TestClient, auth: dict[str, str], rows: Rows, clean_db: Engine
) -> None:
    thread = "root-1@example.org"
    root = rows.email(
        conversation_id=thread,
        subject="Broken invoice",
        from_address="ana@example.org",
        reply_text="The invoice total is wrong.",
        envelope_recipient="support+billing@example.com",
        received_at=T0,
        attachments=[("invoice.pdf", "application/pdf", b"%PDF-1.4 fake")],
    )
    reply = rows.email(
        conversation_id=thread,
        subject="Re: Broken invoice",
        from_address="agent@example.com",
        to=[{"name": "Ana", "address": "ana@example.org"}],
        cc=[{"name": None, "address": "boss@example.org"}],
        reply_text="Fixed, sorry.",
        envelope_recipient="sales@example.com",
        received_at=T0 + minutes(5),
    )
    other = rows.email(conversation_id="other@example.org", received_at=T0 + minutes(1))

    listed = client.get("/api/v1/conversations", headers=auth).json()
    assert [(c["id"], c["email_count"]) for c in listed["items"]] == [
        (thread, 2),
        ("other@example.org", 1),
    ]
    assert listed["items"][0]["subject"] == "Re: Broken invoice"

    detail = client.get(f"/api/v1/conversations/{thread}", headers=auth).json()
    assert [e["id"] for e in detail["emails"]] == [root.id, reply.id]
    replies = [e["reply_text"] for e in detail["emails"]]
    assert replies == ["The invoice total is wrong.", "Fixed, sorry."]
    assert detail["emails"][0]["attachments"][0]["filename"] == "invoice.pdf"
    # The attachment's own text status: unset (a row as stored before text existed) ...
    attachment = detail["emails"][0]["attachments"][0]
    assert (attachment["text_status"], attachment["text_url"]) == (None, None)
    # ... then as a conversion leaves it.
    with Session(clean_db) as session, session.begin():
        session.execute(
            update(Attachment).where(Attachment.email_id == root.id).values(text_status="ready")
        )
    again = client.get(f"/api/v1/conversations/{thread}", headers=auth).json()
    attachment = again["emails"][0]["attachments"][0]
    assert attachment["text_status"] == "ready"
    assert attachment["text_url"] == f"/api/v1/attachments/{attachment['id']}/text"
    assert [p["address"] for p in detail["participants"]] == [
        "ana@example.org",
        "inbox@example.com",
        "agent@example.com",
        "boss@example.org",
    ]
    assert detail["last_activity_at"].startswith("2026-11-01T12:05")

    paged = client.get(f"/api/v1/conversations/{thread}", headers=auth, params={"limit": 1})
    rest = client.get(
        f"/api/v1/conversations/{thread}",
        headers=auth,
        params={"limit": 1, "cursor": paged.json()["next_cursor"]},
    ).json()
    assert [e["id"] for e in rest["emails"]] == [reply.id]

    by_mailbox = client.get(
        "/api/v1/conversations", headers=auth, params={"mailbox": "SALES@example.com"}
    ).json()
    assert [c["id"] for c in by_mailbox["items"]] == [thread]
    assert client.get("/api/v1/conversations/nope@x", headers=auth).status_code == 404

    key = make_key(clean_db, "support", mailboxes=(SUPPORT,))
    scoped = client.get(f"/api/v1/conversations/{thread}", headers=key.headers).json()
    assert [e["id"] for e in scoped["emails"]] == [root.id]
    hidden = client.get(f"/api/v1/conversations/{other.conversation_id}", headers=key.headers)
    assert hidden.status_code == 404
