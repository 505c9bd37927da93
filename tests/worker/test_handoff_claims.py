"""Exactly one hand-off per (email, route) when two publishers race, and none lost when a
publisher dies before its commit: the claim logic of ``worker.dispatch`` on the real
PostgreSQL.

The Celery publish is the dispatcher's seam (``DispatchContext.send_task``): here it
records the keys it is given, so a test can hold a publisher mid-hand-off or kill it
there. The real broker path is tests/worker/test_handoff_dispatch.py.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from shared.db import make_session_factory
from shared.handoff_routes import parse_routes
from shared.models import DeadLetter, Delivery, Dispatch, DispatchStatus, Email
from worker import dispatch

pytestmark = pytest.mark.usefixtures("clean_db")

ROUTES = parse_routes(
    {
        "routes": [
            {"name": "tickets", "handler": {"celery": {"task": "kave.handlers.t", "queue": "q"}}}
        ]
    }
)


class Platform:
    """Records each key handed over; can hold the first hand-off (``gate``) or fail them."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.interrupt = False
        self.fail = False

    def send_task(self, name: str, kwargs: dict[str, Any], queue: str) -> None:
        self.keys.append(kwargs["idempotency_key"])
        if len(self.keys) == 1:
            self.entered.set()
            self.gate.wait(30)
        if self.interrupt:
            raise SoftTimeLimitExceeded()  # the task's time is up mid-hand-off
        if self.fail:
            raise ConnectionError("broker unreachable")


def context(engine: Engine, platform: Platform) -> dispatch.DispatchContext:
    return dispatch.DispatchContext(
        session_factory=make_session_factory(engine),
        routes=ROUTES,
        send_task=platform.send_task,
        schedule=lambda dispatch_id, countdown: None,
    )


def new_dispatch(engine: Engine) -> tuple[str, int]:
    """A stored email of a new delivery with its pending dispatch: (delivery id, dispatch id)."""
    delivery_id = str(uuid.uuid4())
    with Session(engine) as session, session.begin():
        session.add(
            Delivery(
                id=delivery_id,
                received_at=datetime.now(UTC),
                request_id="req",
                body_sha256="0" * 64,
                body_size=1,
                archive_key="deliveries/00/x",
                status="processed",
            )
        )
        session.flush()
        email = Email(
            dedup_key=uuid.uuid4().hex,
            raw_sha256="0" * 64,
            raw_size=1,
            raw_key="raw/x",
            delivery_id=delivery_id,
            received_at=datetime.now(UTC),
        )
        session.add(email)
        session.flush()
        row = Dispatch(
            email_id=email.id,
            route="tickets",
            idempotency_key=uuid.uuid4().hex,
            status=DispatchStatus.PENDING,
        )
        session.add(row)
        session.flush()
        return delivery_id, row.id


def state(engine: Engine, dispatch_id: int) -> tuple[str, int]:
    with Session(engine) as session:
        row = session.get_one(Dispatch, dispatch_id)
        return row.status, row.attempts


def test_a_publisher_killed_before_its_commit_leaves_the_row_due_for_the_sweep(
    engine: Engine,
) -> None:
    platform = Platform()
    ctx = context(engine, platform)
    delivery_id, dispatch_id = new_dispatch(engine)
    platform.interrupt = True
    with pytest.raises(SoftTimeLimitExceeded):
        dispatch.publish_new(ctx, delivery_id, ["tickets"])
    assert len(platform.keys) == 1  # handed over, but the record never committed
    # Not leased: the very next sweep finds it (no waiting for a lease to expire).
    assert state(engine, dispatch_id) == (DispatchStatus.PENDING, 0)
    with Session(engine) as session:
        assert dispatch.due_dispatches(session) == [dispatch_id]

    platform.interrupt = False
    assert dispatch.publish(ctx, dispatch_id) == "delivered"
    assert state(engine, dispatch_id) == (DispatchStatus.DELIVERED, 1)
    assert platform.keys == [platform.keys[0]] * 2  # the same key again: handlers drop it


def test_the_sweep_waits_for_a_publish_in_flight_and_then_skips_it(engine: Engine) -> None:
    platform = Platform()
    ctx = context(engine, platform)
    delivery_id, dispatch_id = new_dispatch(engine)
    platform.gate.clear()
    first = threading.Thread(target=dispatch.publish_new, args=(ctx, delivery_id, ["tickets"]))
    first.start()
    assert platform.entered.wait(30)  # mid-hand-off, its transaction open
    outcomes: list[str] = []
    sweep = threading.Thread(target=lambda: outcomes.append(dispatch.publish(ctx, dispatch_id)))
    sweep.start()
    sweep.join(1.0)
    assert sweep.is_alive()  # held by the row lock, not racing past it
    platform.gate.set()
    first.join(30)
    sweep.join(30)
    assert outcomes == ["skipped"]
    assert len(platform.keys) == 1
    assert state(engine, dispatch_id) == (DispatchStatus.DELIVERED, 1)


def test_a_new_dispatch_claimed_by_the_sweep_first_is_not_handed_over_again(
    engine: Engine,
) -> None:
    platform = Platform()
    ctx = context(engine, platform)
    delivery_id, dispatch_id = new_dispatch(engine)
    assert dispatch.publish(ctx, dispatch_id) == "delivered"
    dispatch.publish_new(ctx, delivery_id, ["tickets"])
    assert len(platform.keys) == 1
    with Session(engine) as session:
        assert session.scalar(select(Dispatch.attempts).where(Dispatch.id == dispatch_id)) == 1


def test_a_late_outcome_from_an_expired_lease_does_not_overwrite_the_next_attempt(
    engine: Engine,
) -> None:
    # A publisher stalls past its lease (a handler that drips its answer, a paused
    # process); the sweep's publisher claims the row again and hands it over.
    platform = Platform()
    ctx = dataclasses.replace(context(engine, platform), max_attempts=1)
    _, dispatch_id = new_dispatch(engine)
    platform.gate.clear()
    outcomes: list[str] = []
    stalled = threading.Thread(target=lambda: outcomes.append(dispatch.publish(ctx, dispatch_id)))
    stalled.start()
    assert platform.entered.wait(30)
    with engine.begin() as conn:  # its lease runs out
        conn.execute(
            update(Dispatch)
            .where(Dispatch.id == dispatch_id)
            .values(next_attempt_at=func.now() - timedelta(seconds=5))
        )
    outcomes.append(dispatch.publish(ctx, dispatch_id))  # the sweep's: gets through
    assert outcomes == ["delivered"]
    platform.fail = True  # the stalled attempt fails, at its last allowed attempt
    platform.gate.set()
    stalled.join(30)
    assert outcomes == ["delivered", "superseded"]
    assert state(engine, dispatch_id) == (DispatchStatus.DELIVERED, 2)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
