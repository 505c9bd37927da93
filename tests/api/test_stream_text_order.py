"""The order of ``email.text_ready`` in the live feed (api/stream/feed.py, text_ready.py),
on the real database, with rows written as the text worker writes them (its status and
``text_position``, the writing transaction's id, in one UPDATE): an email waits for its
last attachment; a conversion that commits late is never skipped by a reader that saw a
later one; a reader resumed from far back reads every event once, in bounded steps.

The feed sends a row once every older transaction of the cluster has ended (other test
sessions and benchmarks share it: a long one delays the feed), so each read polls as a
stream does, for up to two minutes."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, Engine, insert, text, update
from sqlalchemy.orm import Session

from api.stream import feed, text_ready
from api.stream.position import TEXT_READY, Position
from shared.models import Attachment
from tests.api.test_stream import _delivery, insert_email

_FINAL = text("pg_current_xact_id()::text::bigint")


def _attach(engine: Engine, email_id: int, count: int) -> list[int]:
    with engine.begin() as connection:
        return [
            connection.execute(
                insert(Attachment)
                .values(
                    email_id=email_id,
                    position=n,
                    filename=f"f{n}.pdf",
                    content_type="application/pdf",
                    size=1,
                    sha256=f"{email_id:032d}{n:032d}",
                    object_key=f"attachments/{email_id}-{n}",
                    text_status="pending",
                )
                .returning(Attachment.id)
            ).scalar_one()
            for n in range(count)
        ]


def _finish(connection: Connection, attachment_id: int, status: str) -> None:
    connection.execute(
        update(Attachment)
        .where(Attachment.id == attachment_id)
        .values(text_status=status, text_position=_FINAL)
    )


def _poll(
    engine: Engine, after: Position, want: int, timeout: float = 120
) -> tuple[list[tuple[Position, dict[str, Any]]], Position]:
    """Events after ``after`` until ``want`` came (or the timeout), and where that left."""
    got: list[tuple[Position, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    while True:
        with Session(engine) as session:
            batch = feed.next_batch(session, after, [])
        got += batch.events
        after = batch.reached
        if len(got) >= want or time.monotonic() > deadline:
            return got, after
        time.sleep(0.1)


def _kinds(events: list[tuple[Position, dict[str, Any]]]) -> list[tuple[str, int]]:
    return [(data["type"], data["email_id"]) for _, data in events]


def test_an_email_is_text_ready_once_its_last_attachment_is_final(clean_db: Engine) -> None:
    delivery_id = _delivery(clean_db)
    with Session(clean_db) as session:
        start = feed.start(session)
    email_id = insert_email(clean_db, delivery_id, "docs@example.com")
    first, second = _attach(clean_db, email_id, 2)
    with clean_db.begin() as connection:
        _finish(connection, first, "ready")
    events, reached = _poll(clean_db, start, 1)
    assert _kinds(events) == [("email.received", email_id)]
    assert events[0][1]["awaits_text"] is True
    # Past the first conversion's position, and still no text_ready: one waits.
    events, reached = _poll(clean_db, reached, 1, timeout=2)
    assert events == []
    with clean_db.begin() as connection:
        _finish(connection, second, "failed")
    events, _ = _poll(clean_db, reached, 1)
    assert _kinds(events) == [("email.text_ready", email_id)]
    position, data = events[0]
    assert position.kind == TEXT_READY
    assert position.event_id().endswith("-t")
    assert [(a["id"], a["text_status"], a["text_url"]) for a in data["attachments"]] == [
        (first, "ready", f"/api/v1/attachments/{first}/text"),
        (second, "failed", None),
    ]


def test_a_conversion_that_commits_late_is_not_skipped(clean_db: Engine) -> None:
    delivery_id = _delivery(clean_db)
    early_email = insert_email(clean_db, delivery_id, "docs@example.com")
    late_email = insert_email(clean_db, delivery_id, "docs@example.com")
    (early,) = _attach(clean_db, early_email, 1)
    (late,) = _attach(clean_db, late_email, 1)
    _, start = _poll(clean_db, Position(0, 0), 2)  # both received
    with clean_db.connect() as slow:
        slow.execute(text("BEGIN"))
        _finish(slow, early, "ready")  # the smaller transaction id, still open
        with clean_db.begin() as fast:
            _finish(fast, late, "ready")  # commits first
        # Several polls: the later conversion must wait for the earlier one.
        events, reached = _poll(clean_db, start, 1, timeout=1.5)
        assert events == []
        slow.execute(text("COMMIT"))
    events, _ = _poll(clean_db, reached, 2)
    assert _kinds(events) == [
        ("email.text_ready", early_email),
        ("email.text_ready", late_email),
    ]
    assert events[0][0] < events[1][0]


def test_a_reader_from_far_back_reads_every_text_ready_once_in_steps(clean_db: Engine) -> None:
    delivery_id = _delivery(clean_db)
    count = text_ready.WINDOW + 300
    email_id = insert_email(clean_db, delivery_id, "docs@example.com")
    with clean_db.begin() as connection:
        # Many emails each with an attachment converted by its own transaction, as a
        # busy text queue leaves them (positions given, below any running transaction).
        connection.execute(
            text(
                "INSERT INTO emails (dedup_key, raw_sha256, raw_size, raw_key, delivery_id, "
                'envelope_recipient, headers, "to", cc, bcc, reply_to, "references", tags, '
                "spam_rules, feed_position) "
                "SELECT 'bulk-' || n, 'x', 1, 'k', :d, 'docs@example.com', '[]', '[]', "
                "'[]', '[]', '[]', '[]', '[]', '[]', n FROM generate_series(1, :count) n"
            ),
            {"d": delivery_id, "count": count},
        )
        connection.execute(
            text(
                "INSERT INTO attachments (email_id, position, filename, content_type, size, "
                "sha256, object_key, inline, text_status, text_position) "
                "SELECT id, 0, 'f.pdf', 'application/pdf', 1, dedup_key, 'o', false, "
                "'ready', feed_position + 1 FROM emails WHERE dedup_key LIKE 'bulk-%'"
            )
        )
    after = Position(0, 0)
    seen: list[tuple[Position, str, int]] = []
    batches = 0
    while True:
        with Session(clean_db) as session:
            batch = feed.next_batch(session, after, [])
        batches += 1
        seen += [(p, data["type"], data["email_id"]) for p, data in batch.events]
        after = batch.reached
        if not batch.events and after.position > count + 1:
            break
        assert batches < 200
    bulk = [item for item in seen if item[2] != email_id]
    ready = [item for item in bulk if item[1] == "email.text_ready"]
    assert len(ready) == count == len({item[2] for item in ready})
    assert len(bulk) == 2 * count  # each email once received, once text_ready
    positions = [item[0] for item in seen]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert batches > 2 * count // feed.BATCH  # read in bounded steps
