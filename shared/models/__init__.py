"""The relational schema. Alembic migrations in ``migrations/`` create it; a test keeps
the two in agreement.

Idempotency lives in unique keys: a delivery is its receiver-issued id, an event outcome
is (delivery, index in the batch), an email is ``dedup_key`` (Message-ID + sha256 of the
raw message + envelope recipient) and a tracking or sync event is the sha256 of its
canonical JSON. Replays and duplicate batches therefore meet a conflict, never a new row.
"""

from __future__ import annotations

from shared.models.access import ApiKey, User
from shared.models.base import NAMING_CONVENTION, Base
from shared.models.deliveries import (
    DeadLetter,
    DeadLetterStatus,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EventOutcome,
)
from shared.models.dispatch import Dispatch, DispatchStatus
from shared.models.lifecycle import AuditRun, Erasure, ObjectDeletion
from shared.models.mail import Attachment, AttachmentText, DomainActivity, Email, Event

__all__ = [
    "NAMING_CONVENTION",
    "ApiKey",
    "Attachment",
    "AttachmentText",
    "AuditRun",
    "Base",
    "DeadLetter",
    "DeadLetterStatus",
    "Delivery",
    "DeliveryEvent",
    "DeliveryStatus",
    "Dispatch",
    "DispatchStatus",
    "DomainActivity",
    "Email",
    "Erasure",
    "Event",
    "EventOutcome",
    "ObjectDeletion",
    "User",
]
