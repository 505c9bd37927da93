"""An email's rows (worker.ingest.storage.emails.store_email), on the real database: the delivery's
attempt, the email, its attachments, its event's outcome and the claims on their
objects, written by one statement; and what a copy stored before, a failure recorded
before, or objects queued for deletion make of them."""

from __future__ import annotations

import uuid
from dataclasses import astuple
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from psycopg import _queries  # the limits of its statement cache (see the last test)
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from shared.contract import Envelope, archive_object_key
from shared.lifecycle.objects import queue_deletions
from shared.models import Attachment, Delivery, DeliveryEvent, Email, EventOutcome, ObjectDeletion
from worker.handoff.outbox import HANDOFF_OFF
from worker.ingest import parsing
from worker.ingest.rows import (
    ATTACHMENT_COLUMNS,
    attachment_values,
    email_rows,
    email_values,
    raw_message_key,
)
from worker.ingest.storage.deliveries import DeliveryAttempt, record_delivery, record_outcome
from worker.ingest.storage.emails import StoredEmail, _store_email_statement, store_email
from worker.ingest.storage.objects import email_objects

pytestmark = pytest.mark.usefixtures("clean_db")


def _envelope() -> Envelope:
    return Envelope(
        delivery_id=str(uuid.uuid4()),
        received_at=datetime.now(UTC).isoformat(),
        body_sha256=uuid.uuid4().hex * 2,
        body_size=1,
        payload_store="redis",
        payload_key="kave:payload:x",
        request_id="req-rows",
    )


def _delivery(engine: Engine) -> str:
    """A delivery row, which the email's rows refer to."""
    envelope = _envelope()
    with Session(engine) as session, session.begin():
        record_delivery(session, envelope, archive_object_key(envelope.body_sha256))
    return envelope.delivery_id


def _email(message_id: str, files: list[tuple[str, bytes]]) -> parsing.ParsedEmail:
    msg = EmailMessage()
    msg["From"] = "Sender <sender@example.com>"
    msg["To"] = "inbox@example.com"
    msg["Subject"] = "rows"
    msg["Message-ID"] = message_id
    msg.set_content("Hello.\n")
    for filename, content in files:
        msg.add_attachment(
            content, maintype="application", subtype="octet-stream", filename=filename
        )
    event = {"event": "inbound", "ts": 1700000000, "msg": {"raw_msg": msg.as_string()}}
    return parsing.parse_inbound(event)


def _store(
    engine: Engine,
    email: parsing.ParsedEmail,
    delivery_id: str,
    index: int,
    attempt: DeliveryAttempt | None = None,
) -> StoredEmail:
    with Session(engine) as session, session.begin():
        return store_email(
            session, email_rows(email), delivery_id, index, outbox=HANDOFF_OFF, attempt=attempt
        )


def _outcome(engine: Engine, delivery_id: str, index: int) -> tuple:
    with Session(engine) as session:
        row = session.scalars(
            select(DeliveryEvent).where(
                DeliveryEvent.delivery_id == delivery_id, DeliveryEvent.index == index
            )
        ).one()
        return row.kind, row.outcome, row.email_id, row.error


def test_a_new_email_is_stored_with_its_attachments_in_order_and_its_outcome(
    engine: Engine,
) -> None:
    delivery_id = _delivery(engine)
    files = [("a.bin", b"first"), ("b.bin", b"second"), ("c.bin", b"first")]
    email = _email("<new@example.com>", files)

    email_id, outcome, removed = astuple(_store(engine, email, delivery_id, 2))

    assert (outcome, removed) == (EventOutcome.STORED, ())
    with Session(engine) as session:
        row = session.get(Email, email_id)
        assert row is not None
        assert (row.message_id, row.delivery_id) == ("<new@example.com>", delivery_id)
        assert row.raw_key == raw_message_key(email.raw_sha256)
        attachments = session.scalars(
            select(Attachment).where(Attachment.email_id == email_id).order_by(Attachment.id)
        ).all()
    # Inserted in their order (ids ascending with positions), each with its own values.
    assert [(a.position, a.filename, a.size) for a in attachments] == [
        (0, "a.bin", 5),
        (1, "b.bin", 6),
        (2, "c.bin", 5),
    ]
    expected = attachment_values(email)
    assert [a.object_key for a in attachments] == [v["object_key"] for v in expected]
    assert attachments[0].sha256 == attachments[2].sha256 != attachments[1].sha256
    assert _outcome(engine, delivery_id, 2) == ("inbound", EventOutcome.STORED, email_id, None)


def test_an_email_without_attachments_is_stored_alone(engine: Engine) -> None:
    delivery_id = _delivery(engine)
    email_id, outcome, _ = astuple(
        _store(engine, _email("<plain@example.com>", []), delivery_id, 0)
    )

    assert outcome == EventOutcome.STORED
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Attachment)) == 0
        assert session.scalar(select(func.count()).select_from(Email)) == 1
    assert _outcome(engine, delivery_id, 0)[1:3] == (EventOutcome.STORED, email_id)


def test_a_copy_stored_before_is_a_duplicate_that_adds_no_row(engine: Engine) -> None:
    email = _email("<twice@example.com>", [("a.bin", b"bytes")])
    first_delivery, second_delivery = _delivery(engine), _delivery(engine)
    email_id = _store(engine, email, first_delivery, 0).email_id

    again_id, outcome, _ = astuple(_store(engine, email, second_delivery, 0))

    assert (again_id, outcome) == (email_id, EventOutcome.DUPLICATE)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Email)) == 1
        assert session.scalar(select(func.count()).select_from(Attachment)) == 1
        stored = session.get(Email, email_id)
        assert stored is not None
        assert stored.delivery_id == first_delivery  # the delivery that first brought it
    assert _outcome(engine, second_delivery, 0)[1:3] == (EventOutcome.DUPLICATE, email_id)


def test_a_failure_recorded_before_becomes_the_stored_result(engine: Engine) -> None:
    delivery_id = _delivery(engine)
    with Session(engine) as session, session.begin():
        record_outcome(session, delivery_id, 0, "inbound", EventOutcome.FAILED, error="bad MIME")

    email_id, outcome, _ = astuple(
        _store(engine, _email("<fixed@example.com>", []), delivery_id, 0)
    )

    assert outcome == EventOutcome.STORED
    assert _outcome(engine, delivery_id, 0) == ("inbound", EventOutcome.STORED, email_id, None)


def test_the_statement_writes_every_column_of_an_attachment_row() -> None:
    email = _email("<columns@example.com>", [("a.bin", b"x")])
    (row,) = attachment_values(email)
    assert set(row) == set(ATTACHMENT_COLUMNS)


def _attempt(envelope: Envelope, finish_with_events: int | None) -> DeliveryAttempt:
    return DeliveryAttempt(envelope, archive_object_key(envelope.body_sha256), finish_with_events)


@pytest.mark.parametrize("finish_with_events", [1, None])
def test_the_delivery_attempt_is_recorded_by_the_same_statement(
    engine: Engine, finish_with_events: int | None
) -> None:
    envelope = _envelope()
    email = _email("<attempt@example.com>", [])

    stored = _store(engine, email, envelope.delivery_id, 0, _attempt(envelope, finish_with_events))

    assert stored.outcome == EventOutcome.STORED
    with Session(engine) as session:
        row = session.get(Delivery, envelope.delivery_id)
        assert row is not None
        assert (row.attempts, row.event_count) == (1, finish_with_events)
        assert row.status == ("processed" if finish_with_events else "received")
        assert row.archive_key == archive_object_key(envelope.body_sha256)
        stored_email = session.get(Email, stored.email_id)
        assert stored_email is not None
        assert stored_email.delivery_id == envelope.delivery_id


def test_a_duplicate_still_records_the_attempt_and_claims_only_the_archive(
    engine: Engine,
) -> None:
    email = _email("<claims@example.com>", [("a.bin", b"claimed")])
    _store(engine, email, _delivery(engine), 0)
    envelope = _envelope()
    archive = archive_object_key(envelope.body_sha256)
    email_keys = set(email_objects(email))
    with Session(engine) as session, session.begin():
        queue_deletions(session, [archive, *email_keys])

    stored = _store(engine, email, envelope.delivery_id, 0, _attempt(envelope, 1))

    assert stored.outcome == EventOutcome.DUPLICATE
    assert stored.removed_keys == ()  # queued, not yet removed by a drain
    with Session(engine) as session:
        row = session.get(Delivery, envelope.delivery_id)
        assert row is not None
        assert (row.attempts, row.status) == (1, "processed")
        # The archive's entry was claimed by the new delivery row; the email's objects'
        # entries stay for the drain, which finds the existing row still names them.
        assert set(session.scalars(select(ObjectDeletion.key))) == email_keys


def test_a_new_email_claims_its_objects_and_reports_those_a_drain_removed(
    engine: Engine,
) -> None:
    email = _email("<removed@example.com>", [("a.bin", b"removed"), ("b.bin", b"queued")])
    raw_key, removed_key, queued_key = email_objects(email)
    envelope = _envelope()
    with Session(engine) as session, session.begin():
        queue_deletions(session, [raw_key, removed_key, queued_key, "attachments/other"])
        # A drain removed one of them (the entry stays as its tombstone).
        session.execute(
            ObjectDeletion.__table__.update()
            .where(ObjectDeletion.key == removed_key)
            .values(object_deleted_at=datetime.now(UTC))
        )

    stored = _store(engine, email, envelope.delivery_id, 0, _attempt(envelope, 1))

    assert stored.outcome == EventOutcome.STORED
    assert stored.removed_keys == (removed_key,)
    with Session(engine) as session:
        assert set(session.scalars(select(ObjectDeletion.key))) == {"attachments/other"}


def test_a_result_recorded_before_is_never_overwritten(engine: Engine) -> None:
    delivery_id = _delivery(engine)
    first = _store(engine, _email("<first@example.com>", []), delivery_id, 0)

    # The same event again (a replay after the first email was erased, say): the new
    # email is stored, the recorded result stays.
    again = _store(engine, _email("<second@example.com>", []), delivery_id, 0)

    assert again.email_id != first.email_id
    assert _outcome(engine, delivery_id, 0)[1:3] == (EventOutcome.STORED, first.email_id)


@pytest.mark.parametrize(
    ("record_attempt", "finish"), [(True, True), (True, False), (False, False)]
)
def test_the_statement_is_one_psycopg_keeps_parsed(record_attempt: bool, finish: bool) -> None:
    # psycopg parses a statement's placeholders once and caches the result only for
    # statements of up to 4,096 characters and 50 parameters (psycopg/_queries.py);
    # over either, it parses this one on every email (~0.2 ms). A new column may need
    # the statement made shorter (worker.ingest.storage.deliveries.constant says how it was).
    email = _email("<limits@example.com>", [("a.bin", b"x")])
    statement = _store_email_statement(tuple(email_values(email)), record_attempt, finish)
    compiled = statement.compile(dialect=postgresql.psycopg.dialect())
    assert len(str(compiled).encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH
    assert len(compiled.params) <= _queries.MAX_CACHED_STATEMENT_PARAMS
