"""Mandrill-like traffic with a ledger of what was accepted, and the exactly-once check.

Every generated email has its own Message-ID and attachment and every tracking event
its own ``_id``, so the expected final state is known exactly: each accepted event ends
as one email, one event row, or one dead letter, and each attachment content as one
object.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import (
    Attachment,
    DeadLetter,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Email,
    Event,
)
from tests.fault.stack import FaultStack
from tests.services import wait_until
from tests.webhooks import WEBHOOK_PATH, signed_form
from worker.ingest.rows import attachment_key


def inbound_event(tag: str) -> tuple[dict[str, Any], str]:
    """An inbound event and the sha256 of its attachment."""
    message = EmailMessage()
    message["From"] = "Load Test <load@example.org>"
    message["To"] = "inbox@example.com"
    message["Subject"] = f"fault {tag}"
    message["Message-ID"] = f"<{tag}@fault.example.org>"
    message.set_content(f"body of {tag}\n" * 20)
    content = f"attachment of {tag}\n".encode() * 200
    message.add_attachment(content, "application", "octet-stream", filename=f"{tag}.bin")
    event = {
        "event": "inbound",
        "ts": 1700000000,
        "msg": {"raw_msg": message.as_string(), "email": "inbox@example.com"},
    }
    return event, hashlib.sha256(content).hexdigest()


def tracking_event(tag: str) -> dict[str, Any]:
    return {
        "event": "open",
        "ts": 1700000000,
        "msg": {"_id": tag, "email": "reader@example.com", "state": "sent"},
    }


POISON: dict[str, Any] = {"event": "inbound", "ts": 1700000000}  # no msg


@dataclass
class Batch:
    events: list[dict[str, Any]]
    message_ids: list[str] = field(default_factory=list)
    tracking_ids: list[str] = field(default_factory=list)
    attachment_digests: list[str] = field(default_factory=list)
    poison: int = 0

    @property
    def body(self) -> str:
        return json.dumps(self.events)


def make_batch(size: int, *, inbound_share: float = 0.5, poison_at: tuple[int, ...] = ()) -> Batch:
    batch = Batch(events=[])
    for index in range(size):
        tag = uuid.uuid4().hex
        if index in poison_at:
            batch.events.append(POISON)
            batch.poison += 1
        elif index < size * inbound_share:
            event, digest = inbound_event(tag)
            batch.events.append(event)
            batch.message_ids.append(f"<{tag}@fault.example.org>")
            batch.attachment_digests.append(digest)
        else:
            batch.events.append(tracking_event(tag))
            batch.tracking_ids.append(tag)
    return batch


@dataclass
class Ledger:
    """What the receiver accepted (answered 200), batch by batch."""

    stack: FaultStack
    accepted: dict[str, Batch] = field(default_factory=dict)
    refusals: Counter[int] = field(default_factory=Counter)

    def send(self, batch: Batch, *, patience: float = 120) -> str:
        """Post like Mandrill: anything but 200 is retried until accepted."""
        body, headers = signed_form(batch.body)
        deadline = time.monotonic() + patience
        while True:
            try:
                response = httpx.post(
                    self.stack.receiver_url + WEBHOOK_PATH,
                    content=body,
                    headers=headers,
                    timeout=10,
                )
            except httpx.HTTPError:
                self.refusals[0] += 1
            else:
                if response.status_code == 200:
                    delivery_id: str = response.json()["delivery_id"]
                    self.accepted[delivery_id] = batch
                    return delivery_id
                self.refusals[response.status_code] += 1
            if time.monotonic() > deadline:
                raise TimeoutError("the receiver never accepted the batch")
            time.sleep(0.2)

    # --- the check ------------------------------------------------------------------

    def wait_until_finished(self, timeout: float) -> None:
        ids = list(self.accepted)

        def finished() -> bool:
            with Session(self.stack.engine) as session:
                done = session.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(
                        Delivery.id.in_(ids),
                        Delivery.status.in_([DeliveryStatus.PROCESSED, DeliveryStatus.FAILED]),
                    )
                )
            return done == len(ids)

        wait_until(finished, timeout, f"{len(ids)} accepted deliveries", interval=0.5)

    def assert_exactly_once(self, *, dead_letters_expected: int | None = None) -> dict[str, int]:
        """Every accepted event ended exactly once; returns the counts for the record."""
        batches = list(self.accepted.values())
        unique_batches = {id(b): b for b in batches}.values()
        message_ids = [m for b in unique_batches for m in b.message_ids]
        tracking_ids = [t for b in unique_batches for t in b.tracking_ids]
        digests = [d for b in unique_batches for d in b.attachment_digests]
        poison = sum(b.poison for b in batches)
        events_accepted = sum(len(b.events) for b in batches)

        with Session(self.stack.engine) as session:
            stored_ids = list(session.scalars(select(Email.message_id)))
            stored_tracking = list(session.scalars(select(Event.mandrill_id)))
            attachment_rows = list(session.scalars(select(Attachment.sha256)))
            outcomes = session.execute(
                select(DeliveryEvent.delivery_id, DeliveryEvent.index, DeliveryEvent.outcome)
            ).all()
            letters = session.scalar(select(func.count()).select_from(DeadLetter))
            statuses = Counter(
                session.scalars(select(Delivery.status).where(Delivery.id.in_(self.accepted)))
            )

        # Each email and tracking event exactly once, nothing extra.
        assert Counter(stored_ids) == Counter(message_ids)
        assert Counter(stored_tracking) == Counter(tracking_ids)
        assert Counter(attachment_rows) == Counter(digests)
        # Each accepted event has exactly one recorded outcome.
        per_delivery = Counter(delivery_id for delivery_id, _, _ in outcomes)
        for delivery_id, batch in self.accepted.items():
            assert per_delivery[delivery_id] == len(batch.events), delivery_id
        assert len(outcomes) == events_accepted
        assert statuses == Counter({DeliveryStatus.PROCESSED: len(self.accepted)})
        # Poison events, and only they, are dead letters.
        expected_letters = poison if dead_letters_expected is None else dead_letters_expected
        assert letters == expected_letters
        # One object per distinct attachment content.
        keys = self._bucket_keys("attachments/")
        assert keys == {attachment_key(d) for d in digests}
        return {
            "deliveries": len(self.accepted),
            "events": events_accepted,
            "emails": len(stored_ids),
            "tracking": len(stored_tracking),
            "dead_letters": letters or 0,
            "refused_then_retried": sum(self.refusals.values()),
        }

    def _bucket_keys(self, prefix: str) -> set[str]:
        store = self.stack.object_store
        keys: set[str] = set()
        for page in store.client.get_paginator("list_objects_v2").paginate(
            Bucket=store.bucket, Prefix=prefix
        ):
            keys.update(item["Key"] for item in page.get("Contents", []))
        return keys
