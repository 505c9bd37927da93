"""No subject, body or address reaches a log line, a Celery event (what Flower shows) or a
dead letter when an INSERT fails, with a real worker, real PostgreSQL and a real event
receiver.

A trigger on a scratch database refuses every email with the row in its DETAIL, as
PostgreSQL's own NOT NULL and CHECK violations do ("Failing row contains (...)"), and
refuses dead letters too: the delivery is retried (task-retried), given up, and the
dead letter's own INSERT fails (task-failed), so every path a failure takes out of the
worker is exercised.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from shared.models import Delivery
from shared.settings import Settings
from tests.services import wait_until
from tests.worker.scratch import ScratchStack, scratch_stack

REFUSE = """
CREATE FUNCTION refuse_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'row refused by policy' USING DETAIL = format('Failing row contains %s', NEW);
END $$;
CREATE TRIGGER refuse_emails BEFORE INSERT ON emails FOR EACH ROW EXECUTE FUNCTION refuse_row();
CREATE TRIGGER refuse_dead_letters BEFORE INSERT ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION refuse_row();
"""


@pytest.fixture
def refusing_stack(
    base_settings: Settings, postgres_admin_url: str, tmp_path: Path
) -> Iterator[ScratchStack]:
    with scratch_stack(
        base_settings,
        postgres_admin_url,
        tmp_path,
        unknown_error_retries=1,
        retry_backoff_max_seconds=1,
    ) as stack:
        with stack.engine.begin() as conn:
            conn.execute(text(REFUSE))
        yield stack


class EventLog:
    """Every Celery event on the broker, captured by a real event receiver."""

    def __init__(self, broker_url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._app = Celery(broker=broker_url)
        self._ready = threading.Event()
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._app.connection() as connection:
            self._receiver = self._app.events.Receiver(
                connection, handlers={"*": self.events.append}
            )
            self._ready.set()
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> EventLog:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._receiver.should_stop = True
        self._thread.join(5)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("type") == kind]


def secret_email(tag: str) -> str:
    message = EmailMessage()
    message["From"] = f"Secret Sender <addr-{tag}@example.org>"
    message["To"] = f"to-{tag}@example.com"
    message["Subject"] = f"subject-{tag}"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    message.set_content(f"body-{tag}")
    return json.dumps(
        [
            {
                "event": "inbound",
                "ts": 1700000000,
                "msg": {"raw_msg": message.as_string(), "email": f"rcpt-{tag}@example.com"},
            }
        ]
    )


def test_a_failing_insert_leaks_no_content_anywhere(refusing_stack: ScratchStack) -> None:
    stack = refusing_stack
    tag = uuid.uuid4().hex
    secrets = [f"subject-{tag}", f"body-{tag}", f"addr-{tag}", f"to-{tag}", f"rcpt-{tag}", tag]

    # The hazard is real: the driver's own message carries the row.
    with pytest.raises(DBAPIError) as caught, stack.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dead_letters (delivery_id, error_class, message) VALUES (:d, :c, :m)"
            ),
            {"d": "x", "c": "c", "m": f"subject-{tag}"},
        )
    assert f"subject-{tag}" in str(caught.value)

    with EventLog(stack.settings.require_redis_url()) as events:
        delivery_id = stack.post(secret_email(tag))
        wait_until(
            lambda: any(e.get("type") == "task-failed" for e in events.events),
            60,
            "the task to fail",
        )

    retried = events.of_type("task-retried")
    failed = events.of_type("task-failed")
    assert retried, [e.get("type") for e in events.events]
    # What Flower shows: the exception and traceback of each retry and failure.
    assert "RaiseException (SQLSTATE P0001)" in retried[0]["exception"]
    assert "TaskFailure" in failed[0]["exception"]
    assert "RaiseException (SQLSTATE P0001)" in failed[0]["exception"]
    # The frames are kept: where it failed is still visible.
    assert "record_dead_letter" in failed[0]["traceback"]

    log = stack.worker_log.read_text(encoding="utf-8")
    assert "delivery.retrying" in log
    assert delivery_id in log
    everything = {
        "events": json.dumps(events.events),
        "worker log": log,
        "delivery row": _delivery_text(stack.engine, delivery_id),
    }
    leaks = [(where, s) for where, blob in everything.items() for s in secrets if s in blob]
    assert leaks == []


def _delivery_text(engine: Engine, delivery_id: str) -> str:
    with engine.connect() as conn:
        row = conn.execute(select(Delivery).where(Delivery.id == delivery_id)).first()
    return repr(tuple(row)) if row else ""
