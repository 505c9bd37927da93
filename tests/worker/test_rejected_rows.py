"""A row the database refuses (a constraint of its own) is the event's dead letter, on
the first attempt, whether the event is alone in its delivery or not; with a real
worker on a scratch database that refuses one subject."""

from __future__ import annotations

import json
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from shared.models import DeadLetter, Delivery, DeliveryEvent, Email
from shared.settings import Settings
from tests.webhooks import fixture_events, wait_for_deliveries
from tests.worker.scratch import ScratchStack, scratch_stack


@pytest.fixture(scope="module")
def refusing_stack(
    base_settings: Settings, postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScratchStack]:
    with scratch_stack(
        base_settings, postgres_admin_url, tmp_path_factory.mktemp("rejected")
    ) as stack:
        with stack.engine.begin() as conn:
            conn.execute(
                text("ALTER TABLE emails ADD CONSTRAINT no_refused CHECK (subject <> 'refused')")
            )
        yield stack


def refused_event(tag: str) -> dict[str, object]:
    message = EmailMessage()
    message["From"] = "a@example.org"
    message["To"] = "b@example.com"
    message["Subject"] = "refused"
    message["Message-ID"] = f"<{tag}@example.org>"
    message.set_content("body")
    return {"event": "inbound", "ts": 1, "msg": {"raw_msg": message.as_string(), "email": "b@x"}}


def outcome_rows(stack: ScratchStack, delivery_id: str) -> list[tuple[int, str]]:
    with Session(stack.engine) as session:
        rows = session.execute(
            select(DeliveryEvent.index, DeliveryEvent.outcome)
            .where(DeliveryEvent.delivery_id == delivery_id)
            .order_by(DeliveryEvent.index)
        ).all()
    return [(index, outcome) for index, outcome in rows]


@pytest.mark.parametrize("alone", [True, False])
def test_a_refused_row_is_the_events_dead_letter(refusing_stack: ScratchStack, alone: bool) -> None:
    stack = refusing_stack
    batch = [refused_event(f"alone-{alone}")]
    if not alone:
        batch.extend(json.loads(fixture_events("open.json")))
    delivery_id = stack.post(json.dumps(batch))
    wait_for_deliveries(stack.engine, [delivery_id])

    with Session(stack.engine) as session:
        letters = session.scalars(
            select(DeadLetter).where(DeadLetter.delivery_id == delivery_id)
        ).all()
        delivery = session.get(Delivery, delivery_id)
        emails = session.scalars(select(Email).where(Email.delivery_id == delivery_id)).all()
    assert [(d.event_index, d.error_class, d.attempts) for d in letters] == [(0, "rejected_row", 1)]
    assert "CheckViolation (SQLSTATE 23514, table emails, constraint no_refused)" in (
        letters[0].message
    )
    assert emails == []
    assert delivery is not None
    assert (delivery.status, delivery.attempts) == ("processed", 1)
    expected = [(0, "failed")] if alone else [(0, "failed"), (1, "stored")]
    assert outcome_rows(stack, delivery_id) == expected
