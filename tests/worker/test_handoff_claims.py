"""Exactly one hand-off per (email, route) when two publishers race, and none lost when a
publisher dies before recording: the claim logic of ``worker.handoff.dispatch`` and the inline
hand-off of ``worker.handoff.inline`` on the real PostgreSQL.

The Celery publish is the dispatcher's seam (``DispatchContext.send_task``): here it
records the keys it is given, so a test can hold a publisher mid-hand-off or kill it
there. The real broker path is tests/worker/test_handoff_dispatch.py.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from shared.db import make_session_factory
from shared.models import DeadLetter, Dispatch, DispatchStatus
from tests.rows import add_stored_email
from worker.handoff import dispatch, outbox
from worker.handoff import inline as handoff_inline
from worker.handoff.attempt import DispatchContext
from worker.handoff.outbox import NewDispatch
from worker.handoff.routes import parse_routes

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


@pytest.fixture(autouse=True)
def _no_paused_routes() -> Iterator[None]:
    handoff_inline.resume_all()
    yield
    handoff_inline.resume_all()


def context(
    engine: Engine, platform: Platform, scheduled: list[int] | None = None
) -> DispatchContext:
    calls = scheduled if scheduled is not None else []
    return DispatchContext(
        session_factory=make_session_factory(engine),
        routes=ROUTES,
        send_task=platform.send_task,
        schedule=lambda dispatch_id, countdown: calls.append(dispatch_id),
    )


def stored_email(engine: Engine) -> list[NewDispatch]:
    """A new email stored as the worker stores it, its dispatch inserted in the same
    transaction: what the worker hands over after the commit."""
    handed: list[NewDispatch] = []
    with Session(engine) as session, session.begin():
        email = add_stored_email(session)
        values = {"dedup_key": email.dedup_key, "envelope_recipient": "support@example.com"}
        outbox.record_dispatch(
            session, email.id, email.delivery_id, values, routes=ROUTES, handed=handed
        )
    return handed


def expire_lease(engine: Engine, dispatch_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Dispatch)
            .where(Dispatch.id == dispatch_id)
            .values(next_attempt_at=func.now() - timedelta(seconds=5))
        )


def new_dispatch(engine: Engine) -> tuple[str, int]:
    """A stored email of a new delivery with its pending dispatch: (delivery id, dispatch id)."""
    with Session(engine) as session, session.begin():
        email = add_stored_email(session)
        delivery_id = email.delivery_id
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


def test_a_worker_killed_before_recording_leaves_the_row_to_the_sweep_once_leased_out(
    engine: Engine,
) -> None:
    platform = Platform()
    ctx = context(engine, platform)
    (new,) = stored_email(engine)
    assert new.inline
    # Claimed by its insert: attempt 1, leased; the sweep leaves it to this worker.
    assert state(engine, new.id) == (DispatchStatus.PENDING, 1)
    platform.interrupt = True  # the worker's time runs out mid-hand-off
    with pytest.raises(SoftTimeLimitExceeded):
        dispatch.hand_off_new(ctx, [new])
    assert len(platform.keys) == 1  # handed over, but the outcome never recorded
    with Session(engine) as session:
        assert dispatch.due_dispatches(session) == []  # still leased
    expire_lease(engine, new.id)
    with Session(engine) as session:
        assert dispatch.due_dispatches(session) == [new.id]

    platform.interrupt = False
    assert dispatch.publish(ctx, new.id) == "delivered"
    assert state(engine, new.id) == (DispatchStatus.DELIVERED, 2)
    assert platform.keys == [new.key] * 2  # the same key again: handlers drop it


def test_the_sweep_skips_a_row_being_handed_off_inline(engine: Engine) -> None:
    platform = Platform()
    ctx = context(engine, platform)
    (new,) = stored_email(engine)
    platform.gate.clear()
    first = threading.Thread(target=dispatch.hand_off_new, args=(ctx, [new]))
    first.start()
    assert platform.entered.wait(30)  # mid-hand-off
    with Session(engine) as session:
        assert dispatch.due_dispatches(session) == []
    assert dispatch.publish(ctx, new.id) == "skipped"  # a task for it: the lease holds
    platform.gate.set()
    first.join(30)
    assert len(platform.keys) == 1
    assert state(engine, new.id) == (DispatchStatus.DELIVERED, 1)


def test_a_route_that_fails_inline_is_paused_and_its_rows_go_to_tasks(engine: Engine) -> None:
    platform = Platform()
    scheduled: list[int] = []
    ctx = context(engine, platform, scheduled)
    first, second = stored_email(engine)[0], stored_email(engine)[0]
    platform.fail = True  # the broker is unreachable: the route pauses after one try
    dispatch.hand_off_new(ctx, [first, second])
    assert platform.keys == [first.key]
    assert state(engine, first.id) == (DispatchStatus.PENDING, 1)  # retried, backed off
    # Never tried: its claim given back, no attempt spent, due now, and a task of its own.
    assert state(engine, second.id) == (DispatchStatus.PENDING, 0)
    with Session(engine) as session:
        assert dispatch.due_dispatches(session) == [second.id]
    assert sorted(scheduled) == sorted([first.id, second.id])
    # While paused, a new email's row is inserted due, unclaimed, for a task.
    (third,) = stored_email(engine)
    assert not third.inline
    assert state(engine, third.id) == (DispatchStatus.PENDING, 0)
    platform.fail = False
    scheduled.clear()
    dispatch.hand_off_new(ctx, [third])
    assert scheduled == [third.id]
    assert platform.keys == [first.key]  # the task hands it off, not this call
    assert dispatch.publish(ctx, third.id) == "delivered"


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
