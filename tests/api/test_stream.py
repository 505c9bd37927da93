"""GET /api/v1/stream over real HTTP (uvicorn), while writers commit emails out of id
order: a client that disconnects and reconnects with Last-Event-ID gets every email
exactly once, in order; a scoped key sees only its mailboxes; streams per caller
are bounded.

The emails are inserted straight into PostgreSQL by several threads whose transactions
stay open a random while after their insert, so ids commit out of order: the case a
feed by id would get wrong. TOTAL is kept small for CI time; bench/feed_resume.py runs the
same with 500 emails.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session

from api.stream import feed
from loadkit.feed_client import FeedReader, events
from shared.models import Delivery, Email
from tests.api.agents import SUPPORT, make_key

TOTAL = 100
WRITERS = 4
RECONNECTIONS = 10


def _delivery(engine: Engine) -> str:
    delivery_id = str(uuid.uuid4())
    with Session(engine) as session:
        session.add(
            Delivery(
                id=delivery_id,
                received_at=datetime.now(UTC),
                request_id="feed",
                body_sha256="0" * 64,
                body_size=1,
                archive_key="deliveries/feed",
                status="processed",
            )
        )
        session.commit()
    return delivery_id


def insert_email(
    engine: Engine,
    delivery_id: str,
    recipient: str,
    hold: float = 0,
    committed: list[int] | None = None,
) -> int:
    """One email row, its transaction held open ``hold`` seconds after the insert;
    ``committed`` gets its id once it has committed."""
    key = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    with engine.begin() as connection:
        email_id = connection.execute(
            insert(Email)
            .values(
                dedup_key=key,
                raw_sha256=key,
                raw_size=1,
                raw_key=f"messages/{key}.eml",
                envelope_recipient=recipient,
                subject="feed",
                delivery_id=delivery_id,
            )
            .returning(Email.id)
        ).scalar_one()
        time.sleep(hold)
    if committed is not None:
        committed.append(int(email_id))  # list.append is atomic under the GIL
    return int(email_id)


def _writers(
    engine: Engine, delivery_id: str, count: int, recipient: str, committed: list[int]
) -> threading.Thread:
    rng = random.Random(7)
    holds = [rng.choice((0, 0, 0.05, 0.3)) for _ in range(count)]

    def write(share: list[float]) -> None:
        for hold in share:
            insert_email(engine, delivery_id, recipient, hold, committed)

    threads = [threading.Thread(target=write, args=(holds[i::WRITERS],)) for i in range(WRITERS)]

    def run() -> None:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return threading.Thread(target=run)


def test_reconnecting_client_gets_each_email_once_in_order(
    agent_api: str, clean_db: Engine
) -> None:
    delivery_id = _delivery(clean_db)
    reader = FeedReader(agent_api, make_key(clean_db, "feed").headers)
    reader.read(0, timeout=5)  # the ready event: where the feed starts
    commits: list[int] = []
    writers = _writers(clean_db, delivery_id, TOTAL, "support+feed@example.com", commits)
    writers.start()
    per_connection = TOTAL // (RECONNECTIONS + 1)
    for _ in range(RECONNECTIONS):
        reader.read(per_connection, timeout=30)
    writers.join()
    while len(reader.received) < TOTAL and reader.connections < 40:
        reader.read(TOTAL - len(reader.received), timeout=10)

    with Session(clean_db) as session:
        stored = session.scalars(select(Email.id).order_by(Email.feed_position, Email.id))
        in_feed_order = list(stored)
    assert reader.connections >= RECONNECTIONS + 1
    assert len(reader.received) == len(set(reader.received))  # no repeat
    assert reader.received == in_feed_order  # no gap, in order
    assert sorted(in_feed_order) == sorted(commits)
    assert len(commits) == TOTAL
    # The writers really committed out of id order: a cursor on the largest id committed
    # so far would have skipped the emails committed after a larger one.
    assert commits != sorted(commits)


def test_an_open_transaction_holds_later_emails_back(agent_api: str, clean_db: Engine) -> None:
    delivery_id = _delivery(clean_db)
    key = make_key(clean_db, "holder")
    with httpx.stream(
        "GET", agent_api + "/api/v1/stream", headers=key.headers, timeout=httpx.Timeout(10, read=5)
    ) as response:
        stream = events(response)
        assert next(stream).event == "stream.ready"
        with clean_db.connect() as early:
            early.execute(text("BEGIN"))
            first = early.execute(
                insert(Email)
                .values(dedup_key="a" * 64, raw_sha256="a" * 64, raw_size=1, raw_key="k",
                        envelope_recipient="x@example.com", delivery_id=delivery_id)
                .returning(Email.id)
            ).scalar_one()  # fmt: skip
            second = insert_email(clean_db, delivery_id, "x@example.com")  # commits first
            time.sleep(0.5)  # several polls: the later email must wait for the earlier one
            early.execute(text("COMMIT"))
        got = [next(e for e in stream if e.event == "email.received").json()["email_id"]]
        got.append(next(e for e in stream if e.event == "email.received").json()["email_id"])
    assert got == [first, second]


def test_scoped_streams_and_the_bound_per_caller(agent_api: str, clean_db: Engine) -> None:
    delivery_id = _delivery(clean_db)
    key = make_key(clean_db, "scoped", mailboxes=(SUPPORT,))
    url = agent_api + "/api/v1/stream"
    timeout = httpx.Timeout(10, read=5)
    with (
        httpx.stream("GET", url, headers=key.headers, timeout=timeout) as one,
        httpx.stream("GET", url, headers=key.headers, timeout=timeout) as two,
        httpx.stream("GET", url, headers=key.headers, timeout=timeout) as three,
    ):
        assert [r.status_code for r in (one, two, three)] == [200, 200, 200]
        fourth = httpx.get(url, headers=key.headers, timeout=timeout)
        assert fourth.status_code == 429
        assert "Retry-After" in fourth.headers
        stream = events(one)
        assert next(stream).event == "stream.ready"
        insert_email(clean_db, delivery_id, "sales@example.com")
        mine = insert_email(clean_db, delivery_id, "Support+Help@example.com")
        seen = next(e for e in stream if e.event == "email.received").json()
    assert seen["email_id"] == mine
    bad = httpx.get(url, headers={**key.headers, "Last-Event-ID": "nope"}, timeout=timeout)
    assert bad.status_code == 422


def test_a_narrow_stream_moves_past_rows_its_filter_leaves_out(clean_db: Engine) -> None:
    delivery_id = _delivery(clean_db)
    with Session(clean_db) as session:
        start = feed.start(session)
    others = [insert_email(clean_db, delivery_id, "sales@example.com") for _ in range(3)]
    narrow = feed.mailbox_conditions(None, "support@example.com", None)
    with Session(clean_db) as session:
        positions = session.execute(
            select(Email.feed_position, Email.id).where(Email.id.in_(others))
        ).all()

    def passed_them(batch: feed.Batch) -> bool:
        return all(batch.reached > feed.Position(p, i) for p, i in positions)

    # Poll as a stream does: the horizon passes these rows once every older transaction
    # of the cluster has ended (other test sessions, and anything else, share it).
    deadline = time.monotonic() + 30
    while True:
        with Session(clean_db) as session:
            batch = feed.next_batch(session, start, narrow)
        # None of its mailbox, whatever the horizon: nothing to send.
        assert batch.events == []
        if passed_them(batch) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # Past the rows it left out: the next poll does not read them again.
    assert passed_them(batch)
    mine = insert_email(clean_db, delivery_id, "support@example.com")
    # The feed sends a row once every older transaction of the cluster has ended (other
    # test sessions share it): poll as a stream does, until it comes.
    deadline = time.monotonic() + 30
    got: list[int] = []
    while not got and time.monotonic() < deadline:
        with Session(clean_db) as session:
            got = [e["email_id"] for _, e in feed.next_batch(session, batch.reached, narrow).events]
        if not got:
            time.sleep(0.2)
    assert got == [mine]
