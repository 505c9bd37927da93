"""Every fixture through the real receiver (uvicorn) and a real Celery worker into the
real database and the S3 server.

Expected values are derived here independently of the worker's parser: recipients and
attachments straight from ``raw_msg`` with the standard library, verdicts from the
fixture's JSON.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload

from shared.models import Attachment, Delivery, DeliveryEvent, DomainActivity, Email, Event
from shared.objectstore import S3ObjectStore
from tests.services import FIXTURES
from tests.webhooks import fixture_events, post_events, settle, wait_for_deliveries
from worker.ingest.storage.activity import recipient_domain

pytestmark = pytest.mark.usefixtures("worker", "clean_db")

INBOUND_FIXTURES = sorted(
    p.name for p in FIXTURES.glob("inbound*.json") if p.name != "inbound_without_msg.json"
)


def send(receiver: str, events: str) -> str:
    response = post_events(receiver, events)
    assert response.status_code == 200, response.text
    delivery_id: str = response.json()["delivery_id"]
    return delivery_id


def send_and_wait(receiver: str, engine: Engine, events: str) -> str:
    delivery_id = send(receiver, events)
    wait_for_deliveries(engine, [delivery_id])
    return delivery_id


def load_emails(engine: Engine) -> list[Email]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(Email).options(selectinload(Email.attachments)).order_by(Email.id)
            )
        )


def mime_attachment_digests(raw: bytes) -> list[str]:
    """sha256 of every attachment or inline image part of the raw message."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    digests = []
    for part in message.walk():
        if part.is_multipart() or part.get_content_type() == "message/rfc822":
            continue
        if part.get_filename() or part.get_content_disposition() == "attachment":
            digests.append(hashlib.sha256(part.get_payload(decode=True)).hexdigest())
    return sorted(digests)


def header_addresses(raw: bytes, name: str) -> list[str]:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    values = [str(v) for v in message.get_all(name, [])]
    return [address for _, address in getaddresses(values) if address]


@pytest.mark.parametrize("name", INBOUND_FIXTURES)
def test_inbound_fixture_is_stored_with_its_attachments(
    name: str, receiver: str, engine: Engine, object_store: S3ObjectStore
) -> None:
    events = fixture_events(name)
    (event,) = json.loads(events)
    msg: dict[str, Any] = event["msg"]
    raw = msg["raw_msg"].encode("utf-8")

    delivery_id = send_and_wait(receiver, engine, events)

    (email,) = load_emails(engine)
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert email.delivery_id == delivery_id
    assert email.from_address == parseaddr(str(parsed["from"]))[1]
    assert [a["address"] for a in email.to] == header_addresses(raw, "to")
    assert [a["address"] for a in email.cc] == header_addresses(raw, "cc")
    assert email.subject == str(parsed["subject"])
    assert email.envelope_recipient == msg["email"]
    assert email.message_id is not None
    assert email.message_id.strip("<>") == str(parsed["message-id"]).strip().strip("<>")
    if msg.get("text"):
        assert email.text_body == msg["text"]
    if msg.get("html"):
        assert email.html_body == msg["html"]
    assert email.text_body or email.html_body

    spam = msg.get("spam_report") or {}
    assert email.spam_score == spam.get("score")
    assert email.spf_result == (msg.get("spf") or {}).get("result")
    assert email.dkim_valid == (msg.get("dkim") or {}).get("valid")

    # The raw message, and each attachment by the sha256 of its decoded bytes.
    assert email.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert object_store.get(email.raw_key) == raw
    assert sorted(a.sha256 for a in email.attachments) == mime_attachment_digests(raw)
    for attachment in email.attachments:
        content = object_store.get(attachment.object_key)
        assert hashlib.sha256(content).hexdigest() == attachment.sha256
        assert len(content) == attachment.size
        assert "/" not in attachment.filename
        assert "\\" not in attachment.filename


def test_reply_recipients_come_from_raw_msg_not_mandrills_mis_split_to(
    receiver: str, engine: Engine
) -> None:
    send_and_wait(receiver, engine, fixture_events("inbound_reply.json"))
    (email,) = load_emails(engine)
    assert [a["address"] for a in email.to] == ["to@example.com", "other.to@example.com"]
    assert [a["name"] for a in email.to] == [None, "Other To"]
    assert [a["address"] for a in email.cc] == ["cc@example.com"]
    assert email.in_reply_to
    assert email.references
    # The recipient filter's column: envelope recipient, To and Cc, lower-cased, once each.
    expected = {"to@example.com", "other.to@example.com", "cc@example.com"}
    assert email.recipient_addresses == sorted({*expected, email.envelope_recipient.lower()})


def test_verdict_columns(receiver: str, engine: Engine) -> None:
    send_and_wait(receiver, engine, fixture_events("inbound_html_only.json"))
    (email,) = load_emails(engine)
    assert email.spam_score == 3.1
    assert email.spf_result == "none"
    assert (email.dkim_signed, email.dkim_valid) == (False, False)
    names = [rule["name"] for rule in email.spam_rules]
    assert "URIBL_BLOCKED" in names
    assert None in names
    assert email.text_body is None or email.text_body.strip() != ""
    assert email.html_body


def test_minimal_payload_is_parsed_from_raw_msg_alone(receiver: str, engine: Engine) -> None:
    send_and_wait(receiver, engine, fixture_events("inbound_minimal_raw_only.json"))
    (email,) = load_emails(engine)
    assert email.from_address == "test@example.org"
    assert email.from_name == "A tester"
    assert [a["address"] for a in email.to] == ["test@inbound.example.com", "other@example.com"]
    assert email.envelope_recipient == "delivered-to@example.com"
    assert email.subject == "Test subject"
    assert email.spam_score == 1.7
    assert email.text_body
    assert email.html_body


def test_rails_inbound_value_is_stored(receiver: str, engine: Engine) -> None:
    events = (FIXTURES / "rails_inbound_mandrill_events_value.txt").read_text(encoding="utf-8")
    send_and_wait(receiver, engine, events)
    (email,) = load_emails(engine)
    raw = json.loads(events)[0]["msg"]["raw_msg"].encode()
    assert email.subject
    assert sorted(a.sha256 for a in email.attachments) == mime_attachment_digests(raw)


def test_event_without_msg_fails_alone_and_the_rest_of_the_batch_is_stored(
    receiver: str, engine: Engine
) -> None:
    batch = [
        *json.loads(fixture_events("send.json")),
        *json.loads(fixture_events("inbound_without_msg.json")),
        *json.loads(fixture_events("inbound.json")),
    ]
    delivery_id = send_and_wait(receiver, engine, json.dumps(batch))
    with Session(engine) as session:
        outcomes = session.execute(
            select(
                DeliveryEvent.index, DeliveryEvent.kind, DeliveryEvent.outcome, DeliveryEvent.error
            )
            .where(DeliveryEvent.delivery_id == delivery_id)
            .order_by(DeliveryEvent.index)
        ).all()
        delivery = session.get(Delivery, delivery_id)
    assert [(i, k, o) for i, k, o, _ in outcomes] == [
        (0, "send", "stored"),
        (1, "inbound", "failed"),
        (2, "inbound", "stored"),
    ]
    assert "msg" in (outcomes[1].error or "")
    assert delivery is not None
    assert (delivery.status, delivery.event_count) == ("processed", 3)
    assert len(load_emails(engine)) == 1


def test_tracking_and_sync_events_are_stored(receiver: str, engine: Engine) -> None:
    names = ["send.json", "open.json", "click.json", "sync_blacklist.json", "sync_whitelist.json"]
    batch = [event for name in names for event in json.loads(fixture_events(name))]
    batch.append({"event": "brand_new_kind", "ts": 1700000000, "msg": {"_id": "x1"}})
    send_and_wait(receiver, engine, json.dumps(batch))
    with Session(engine) as session:
        rows = session.execute(
            select(Event.kind, Event.mandrill_id, Event.recipient).order_by(Event.id)
        ).all()
    kinds = [kind for kind, _, _ in rows]
    assert kinds == [
        "send", "open", "click",
        "sync.blacklist", "sync.blacklist", "sync.blacklist",
        "sync.whitelist", "sync.whitelist",
        "brand_new_kind",
    ]  # fmt: skip
    send_event = json.loads(fixture_events("send.json"))[0]
    assert rows[0][1] == send_event["msg"]["_id"]
    assert rows[0][2] == send_event["msg"]["email"]
    blacklist = json.loads(fixture_events("sync_blacklist.json"))
    assert [r[2] for r in rows[3:6]] == [e["reject"]["email"] for e in blacklist]


def _bucket_keys(store: S3ObjectStore) -> set[str]:
    keys: set[str] = set()
    paginator = store.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def _unique_email_with_attachments() -> str:
    """A message whose contents exist nowhere else, so its objects are new."""
    tag = uuid.uuid4().hex
    message = EmailMessage()
    message["From"] = "Sender <sender@example.org>"
    message["To"] = "inbox@example.com"
    message["Subject"] = f"unique {tag}"
    message["Message-ID"] = f"<{tag}@example.org>"
    message.set_content(f"body {tag}")
    message.add_attachment(f"first {tag}".encode(), "application", "octet-stream", filename="a.bin")
    message.add_attachment(f"second {tag}".encode(), "text", "plain", filename="../b.txt")
    raw = message.as_string()
    return json.dumps(
        [
            {
                "event": "inbound",
                "ts": 1700000000,
                "msg": {"raw_msg": raw, "email": "inbox@example.com"},
            }
        ]
    )


def test_same_batch_twice_gives_no_duplicate_rows_or_objects(
    receiver: str, engine: Engine, object_store: S3ObjectStore
) -> None:
    events = _unique_email_with_attachments()
    before = _bucket_keys(object_store)
    first = send_and_wait(receiver, engine, events)
    after_first = _bucket_keys(object_store)
    second = send_and_wait(receiver, engine, events)
    settle()
    after_second = _bucket_keys(object_store)

    (email,) = load_emails(engine)
    assert len(email.attachments) == 2
    assert sorted(a.filename for a in email.attachments) == ["a.bin", "b.txt"]
    # One archived body (same bytes twice), one raw message, two attachments.
    assert len(after_first - before) == 4
    assert after_second == after_first
    with Session(engine) as session:
        outcomes = session.execute(select(DeliveryEvent.delivery_id, DeliveryEvent.outcome)).all()
        attachment_rows = session.scalar(select(func.count()).select_from(Attachment))
    assert sorted(outcomes, key=lambda o: o[0] != first) == [
        (first, "stored"),
        (second, "duplicate"),
    ]
    assert attachment_rows == 2
    # The per-domain count moved with the stored email only, not with its duplicate.
    assert _domain_counts(engine) == {recipient_domain(email.envelope_recipient): 1}


def _domain_counts(engine: Engine) -> dict[str | None, int]:
    with Session(engine) as session:
        rows = session.execute(select(DomainActivity.domain, DomainActivity.emails))
        return dict(rows.all())


def test_one_email_in_two_payload_shapes_is_stored_once(receiver: str, engine: Engine) -> None:
    send_and_wait(receiver, engine, fixture_events("inbound_text_only.json"))
    send_and_wait(receiver, engine, fixture_events("inbound_with_txt_attachment.json"))
    assert len(load_emails(engine)) == 1


def test_same_message_for_two_envelope_recipients_is_two_emails(
    receiver: str, engine: Engine
) -> None:
    (event,) = json.loads(fixture_events("inbound.json"))
    other = json.loads(json.dumps(event))
    other["msg"]["email"] = "second-route@example.com"
    send_and_wait(receiver, engine, json.dumps([event, other]))
    emails = load_emails(engine)
    assert sorted(e.envelope_recipient or "" for e in emails) == sorted(
        [event["msg"]["email"], "second-route@example.com"]
    )
    assert sum(_domain_counts(engine).values()) == 2


def test_hostile_values_are_stored_not_retried_forever(receiver: str, engine: Engine) -> None:
    """A NUL in the body and a From address far beyond any index limit."""
    local_part = secrets.token_hex(2000)
    raw = (
        f"From: <{local_part}@example.org>\r\nTo: inbox@example.com\r\n"
        "Subject: hostile\r\nMessage-ID: <hostile@example.org>\r\n\r\nbefore\x00after\r\n"
    )
    events = json.dumps(
        [{"event": "inbound", "ts": 1, "msg": {"raw_msg": raw, "email": "inbox@example.com"}}]
    )
    send_and_wait(receiver, engine, events)
    (email,) = load_emails(engine)
    assert email.text_body is not None
    assert "\x00" not in email.text_body
    assert "before" in email.text_body
    assert email.from_address is not None
    assert email.from_address.startswith(local_part[:100])
