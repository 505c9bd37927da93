"""What every ingest step is handed (the stores, the limits, the upload threads), and what
one delivery's processing adds up to."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from redis import Redis
from sqlalchemy.orm import Session

from shared.accepted import AcceptedLedger
from shared.contract import Envelope
from shared.models import Delivery
from shared.objectstore import ObjectStore
from worker.handoff.outbox import HANDOFF_OFF, NewDispatch, Outbox
from worker.ingest import parsing
from worker.ingest.scan import Scanner
from worker.ingest.trust import SenderTrust


@dataclass(frozen=True)
class IngestContext:
    session_factory: Callable[[], AbstractContextManager[Session]]
    object_store: ObjectStore
    redis: Redis
    # The receiver's entries of accepted deliveries (shared.accepted) on the worker's
    # queue: a delivery's entry goes with its body's copy when it ends.
    ledger: AcceptedLedger
    max_worker_losses: int = 3
    email_limits: parsing.EmailLimits = parsing.DEFAULT_LIMITS
    # The process's upload threads, for a store whose puts wait on the network (None:
    # one after another; see worker.resources).
    uploads: Executor | None = None
    # Where a new email's dispatch row is written, by this worker's routes.
    outbox: Outbox = HANDOFF_OFF
    # Verifies senders with the process's DNS cache (None: KAVE_SENDER_TRUST off, the
    # verdict is NULL).
    sender_trust: SenderTrust | None = None
    # Streams attachments to clamd (None: KAVE_MALWARE_SCAN off, scan_status NULL).
    scanner: Scanner | None = None


@dataclass
class DeliveryResult:
    delivery_id: str
    event_count: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    # The dispatch rows committed with this delivery's new emails, to hand over now.
    new_dispatches: list[NewDispatch] = field(default_factory=list)
    # The contents (sha256) of new attachments waiting for their text, to queue now.
    text_pending: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def envelope_for(delivery: Delivery) -> Envelope:
    """An envelope that reads a recorded delivery back from its archive."""
    return Envelope(
        delivery_id=delivery.id,
        received_at=delivery.received_at.isoformat(),
        body_sha256=delivery.body_sha256,
        body_size=delivery.body_size,
        payload_store="object",
        payload_key=delivery.archive_key,
        request_id=delivery.request_id,
    )
