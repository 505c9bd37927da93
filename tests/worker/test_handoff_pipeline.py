"""Derived hand-off fields through the real receiver (uvicorn) and a real Celery worker.

A thread of three messages, an out-of-office, a bounce and an executable sent as a PDF go
through the whole pipeline; the stored rows carry what an agent needs.
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, selectinload

from shared.models import Attachment, Email
from shared.settings import Settings
from tests.kave.support import kave_with_settings
from tests.webhooks import post_events, wait_for_deliveries

pytestmark = pytest.mark.usefixtures("worker", "clean_db")

HANDOFF = Path(__file__).resolve().parents[1] / "fixtures" / "handoff"
REPLIES = Path(__file__).resolve().parents[1] / "fixtures" / "replies"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 64


FORWARD = """See below.

---------- Forwarded message ---------
From: Bob <bob@example.net>
Subject: The plan

We start on Monday.
"""


def mail(message_id: str, body: str, **headers: str) -> str:
    msg = EmailMessage()
    msg["From"] = "Ana <ana@example.org>"
    msg["To"] = "support+ticket-42@example.com"
    msg["Subject"] = "Ticket 42"
    msg["Message-ID"] = message_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_string()


def events(*raws: str, recipient: str = "support+ticket-42@example.com") -> str:
    return json.dumps(
        [
            {"event": "inbound", "ts": 1764583200, "msg": {"raw_msg": raw, "email": recipient}}
            for raw in raws
        ]
    )


def send_and_wait(receiver: str, engine: Engine, batch: str) -> None:
    response = post_events(receiver, batch)
    assert response.status_code == 200, response.text
    wait_for_deliveries(engine, [response.json()["delivery_id"]])


def stored(engine: Engine) -> dict[str, Email]:
    with Session(engine) as session:
        rows = session.scalars(select(Email).options(selectinload(Email.attachments)))
        return {row.message_id or "": row for row in rows}


def test_a_reply_in_a_thread_gets_the_root_conversation_id(receiver: str, engine: Engine) -> None:
    gmail_reply = (REPLIES / "gmail_plain.txt").read_text(encoding="utf-8")
    root = mail("<root-42@example.org>", "My printer is on fire.\n")
    reply = mail(
        "<reply-1@example.net>",
        gmail_reply,
        In_Reply_To="<root-42@example.org>",
        References="<root-42@example.org>",
    )
    # The second reply arrives in a later batch, answering the first reply.
    send_and_wait(receiver, engine, events(root, reply))
    second = mail(
        "<reply-2@example.org>",
        "Thanks!\n",
        In_Reply_To="<reply-1@example.net>",
        References="<root-42@example.org> <reply-1@example.net>",
    )
    send_and_wait(receiver, engine, events(second))

    emails = stored(engine)
    assert {e.conversation_id for e in emails.values()} == {"root-42@example.org"}
    assert len(emails) == 3
    first_reply = emails["<reply-1@example.net>"]
    assert first_reply.reply_text == "This is a test for inbox replying to a github message."
    assert first_reply.mailbox_hash == "ticket-42"
    assert first_reply.auto_submitted is False


def test_out_of_office_bounce_and_disguised_executable_are_flagged(
    receiver: str, engine: Engine
) -> None:
    oof = (HANDOFF / "out_of_office_exchange.eml").read_text(encoding="utf-8")
    bounce = (HANDOFF / "dsn_postfix.eml").read_text(encoding="utf-8")
    msg = EmailMessage()
    msg["From"] = "ana@example.org"
    msg["Message-ID"] = "<invoice@example.org>"
    msg.set_content("invoice attached")
    msg.add_attachment(EXE, maintype="application", subtype="pdf", filename="invoice.pdf")
    listed = mail("<list-1@example.org>", "Me too.\n", Precedence="list", List_Id="<u.example>")
    send_and_wait(receiver, engine, events(oof, bounce, msg.as_string(), listed))

    emails = stored(engine)
    ooo = emails["<oof-1@example.net>"]
    assert (ooo.auto_submitted, ooo.auto_submitted_reason) == (True, "auto-submitted:auto-replied")
    dsn = emails["<20260101120000.ABC123@mx.example.org>"]
    assert (dsn.auto_submitted, dsn.auto_submitted_reason) == (True, "dsn")
    assert dsn.bounced_addresses == ["Gone@example.net"]  # the domain lower-cased only
    (attachment,) = emails["<invoice@example.org>"].attachments
    assert attachment.content_type == "application/pdf"
    assert attachment.sniffed_type == "application/x-msdownload"
    assert attachment.type_mismatch is True
    assert emails["<invoice@example.org>"].auto_submitted is False
    # A person's answer through a mailing list: bulk, not machine-written.
    list_mail = emails["<list-1@example.org>"]
    assert (list_mail.bulk, list_mail.auto_submitted) == (True, False)
    assert (ooo.bulk, dsn.bulk) == (False, False)


def test_reprocess_re_derives_rows_stored_before_the_hand_off(
    receiver: str, engine: Engine, base_settings: Settings
) -> None:
    reply = mail("<r@example.org>", "Yes.\n", References="<root@example.org>")
    forward = mail("<f@example.org>", FORWARD, List_Id="<team.lists.example.org>")
    send_and_wait(receiver, engine, events(reply, forward))
    # What a row stored before migration 0005 (and 0009) looks like: no derived fields.
    with engine.begin() as conn:
        conn.execute(
            update(Email).values(
                conversation_id=None,
                reply_text=None,
                mailbox_hash=None,
                forwarded_text=None,
                bulk=False,
            )
        )
        conn.execute(update(Attachment).values(sniffed_type=None))
    result = kave_with_settings(
        ["reprocess", "--since", "2000-01-01T00:00:00+00:00"], base_settings
    )
    assert result.returncode == 0, result.stderr
    assert "conversation_id" in result.stdout
    assert "bulk" in result.stdout
    assert "forwarded_text" in result.stdout
    rows = stored(engine)
    row = rows["<r@example.org>"]
    assert (row.conversation_id, row.reply_text, row.mailbox_hash) == (
        "root@example.org",
        "Yes.",
        "ticket-42",
    )
    assert (rows["<f@example.org>"].bulk, rows["<f@example.org>"].forwarded_text) == (
        True,
        "From: Bob <bob@example.net>\nSubject: The plan\n\nWe start on Monday.",
    )
