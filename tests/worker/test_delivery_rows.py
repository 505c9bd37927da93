"""The delivery row's writes (worker.ingest.storage), on the real database: an attempt, an end,
and both in one statement, as a single-event delivery writes them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from shared.contract import Envelope, archive_object_key
from shared.models import Delivery
from worker.ingest.storage.deliveries import ensure_delivery, finish_delivery, record_delivery

pytestmark = pytest.mark.usefixtures("clean_db")


def _envelope() -> Envelope:
    sha256 = uuid.uuid4().hex * 2
    return Envelope(
        delivery_id=str(uuid.uuid4()),
        received_at=datetime.now(UTC).isoformat(),
        body_sha256=sha256,
        body_size=123,
        payload_store="redis",
        payload_key="kave:payload:x",
        request_id="req-1",
    )


def _write(engine: Engine, envelope: Envelope, finish_with_events: int | None) -> Delivery:
    with Session(engine) as session, session.begin():
        record_delivery(
            session,
            envelope,
            archive_object_key(envelope.body_sha256),
            finish_with_events=finish_with_events,
        )
    with Session(engine) as session:
        row = session.get(Delivery, envelope.delivery_id)
        assert row is not None
        return row


def test_a_first_attempt_that_also_ends_the_delivery_writes_one_finished_row(
    engine: Engine,
) -> None:
    envelope = _envelope()
    row = _write(engine, envelope, finish_with_events=1)
    assert (row.status, row.event_count, row.attempts, row.error) == ("processed", 1, 1, None)
    assert row.last_attempt_at is not None
    assert row.handled_at is not None
    assert (row.request_id, row.body_sha256, row.body_size) == ("req-1", envelope.body_sha256, 123)
    assert row.archive_key == archive_object_key(envelope.body_sha256)


def test_an_attempt_alone_leaves_the_delivery_received_until_its_end(engine: Engine) -> None:
    envelope = _envelope()
    row = _write(engine, envelope, finish_with_events=None)
    assert (row.status, row.event_count, row.attempts, row.handled_at) == (
        "received",
        None,
        1,
        None,
    )
    with Session(engine) as session, session.begin():
        finish_delivery(session, envelope.delivery_id, event_count=3)
    with Session(engine) as session:
        ended = session.get(Delivery, envelope.delivery_id)
        assert ended is not None
        assert (ended.status, ended.event_count, ended.attempts) == ("processed", 3, 1)
        assert ended.handled_at is not None


def test_a_later_attempt_that_ends_the_delivery_counts_itself_and_clears_the_failure(
    engine: Engine,
) -> None:
    envelope = _envelope()
    _write(engine, envelope, finish_with_events=None)
    with Session(engine) as session, session.begin():
        finish_delivery(session, envelope.delivery_id, event_count=None, error="gone")
    row = _write(engine, envelope, finish_with_events=2)
    assert (row.status, row.event_count, row.attempts, row.error) == ("processed", 2, 2, None)
    assert row.handled_at is not None


def test_ensuring_the_row_counts_no_attempt_and_keeps_an_existing_one(engine: Engine) -> None:
    envelope = _envelope()
    archive = archive_object_key(envelope.body_sha256)
    with Session(engine) as session, session.begin():
        ensure_delivery(session, envelope, archive)
    with Session(engine) as session:
        row = session.get(Delivery, envelope.delivery_id)
        assert row is not None
        assert (row.status, row.attempts, row.last_attempt_at) == ("received", 0, None)
    _write(engine, envelope, finish_with_events=1)
    with Session(engine) as session, session.begin():
        ensure_delivery(session, envelope, archive)
    with Session(engine) as session:
        row = session.get(Delivery, envelope.delivery_id)
        assert row is not None
        assert (row.status, row.attempts) == ("processed", 1)
