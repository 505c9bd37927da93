"""Threads that join, through the real receiver and a real Celery worker into the real
database: a reply takes the conversation of the stored email it names
(worker.ingest.storage.threads), and ``kave reprocess`` gives the same answer."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from shared.models import Email
from shared.settings import Settings
from tests.kave.support import kave_with_settings as kave
from tests.webhooks import post_events, wait_for_deliveries
from tests.worker.test_derive import message

pytestmark = pytest.mark.usefixtures("worker", "clean_db")

FREE_TEXT = 'Your message of "Thu, 01 Aug 2024 10:00:00 +0200"'


def event(message_id: str, **headers: str) -> dict[str, object]:
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    raw = message({"Message-ID": message_id, **named}, f"text of {message_id}\n").as_string()
    return {"event": "inbound", "ts": 1700000000, "msg": {"raw_msg": raw}}


def deliver(receiver: str, engine: Engine, *events: dict[str, object]) -> str:
    """One delivery holding ``events`` in order, once the worker has processed it."""
    response = post_events(receiver, json.dumps(list(events)))
    assert response.status_code == 200, response.text
    delivery_id: str = response.json()["delivery_id"]
    wait_for_deliveries(engine, [delivery_id])
    return delivery_id


def deliver_one_by_one(receiver: str, engine: Engine, *events: dict[str, object]) -> None:
    """Each of ``events`` in a delivery of its own, in order."""
    for one in events:
        deliver(receiver, engine, one)


ROOT = event("<root@shop.example>")
REPLY_TO_ROOT = event("<a@shop.example>", In_Reply_To="<root@shop.example>")


def conversations(engine: Engine) -> dict[str, str | None]:
    """Each stored email's conversation id, by its Message-ID."""
    with Session(engine) as session:
        rows = session.execute(select(Email.message_id, Email.conversation_id)).all()
    return {str(message_id): conversation for message_id, conversation in rows}


def test_a_reply_with_only_in_reply_to_joins_its_stored_parent(
    receiver: str, engine: Engine
) -> None:
    deliver_one_by_one(receiver, engine, ROOT, REPLY_TO_ROOT)
    # Without References, the stateless rule alone would name the thread after a@.
    deliver(receiver, engine, event("<b@client.example>", In_Reply_To="<a@shop.example>"))

    assert set(conversations(engine).values()) == {"root@shop.example"}


def test_a_references_only_reply_to_the_middle_of_a_thread_joins(
    receiver: str, engine: Engine
) -> None:
    middle = event(
        "<mid@shop.example>", In_Reply_To="<root@shop.example>", References="<root@shop.example>"
    )
    deliver_one_by_one(receiver, engine, ROOT, middle)
    # A client that kept only the message it answers, and no In-Reply-To.
    deliver(receiver, engine, event("<late@client.example>", References="<mid@shop.example>"))

    assert conversations(engine)["<late@client.example>"] == "root@shop.example"


def test_a_parent_earlier_in_the_same_batch_is_joined(receiver: str, engine: Engine) -> None:
    # A delivery's events commit one after another, in order.
    deliver(
        receiver,
        engine,
        event("<first@shop.example>", References="<gone@shop.example>"),
        event("<second@client.example>", In_Reply_To="<first@shop.example>"),
    )

    assert set(conversations(engine).values()) == {"gone@shop.example"}


def test_free_text_in_reply_to_starts_no_shared_thread(receiver: str, engine: Engine) -> None:
    deliver(receiver, engine, event("<one@a.example>", In_Reply_To=FREE_TEXT))
    deliver(receiver, engine, event("<two@b.example>", In_Reply_To=FREE_TEXT))

    found = conversations(engine)
    assert found == {"<one@a.example>": "one@a.example", "<two@b.example>": "two@b.example"}
    with Session(engine) as session:
        # The header is still stored as parsed; it just names no thread.
        stored = session.scalars(select(Email.in_reply_to)).all()
    assert set(stored) == {"Your"}


def test_reprocess_joins_a_reply_stored_before_its_parent(
    receiver: str, engine: Engine, base_settings: Settings
) -> None:
    reply = deliver(receiver, engine, event("<b@client.example>", In_Reply_To="<a@shop.example>"))
    deliver_one_by_one(receiver, engine, ROOT, REPLY_TO_ROOT)
    # Nothing rewrites a stored reply when its parent arrives: the stateless id stays.
    assert conversations(engine)["<b@client.example>"] == "a@shop.example"

    dry = kave(["reprocess", "--delivery", reply, "--dry-run"], base_settings)
    assert dry.returncode == 0, dry.stderr
    assert "conversation_id" in dry.stdout
    applied = kave(["reprocess", "--delivery", reply], base_settings)
    assert applied.returncode == 0, applied.stderr

    assert set(conversations(engine).values()) == {"root@shop.example"}
    # What ingest gave the others is what reprocessing gives them: nothing changes.
    again = kave(["reprocess", "--since", "2000-01-01T00:00:00+00:00", "--dry-run"], base_settings)
    assert "no changes (3 deliveries checked)" in again.stdout, again.stdout
