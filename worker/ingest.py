"""The ingest service: one delivery in, one recorded outcome per event out.

Steps, each safe to repeat after a crash at any point:
1. load the body (Redis, or the object store for claim-checked and already archived
   bodies) and check its sha256 against the envelope;
2. archive it, content-addressed, and record the delivery row;
3. process each event of the batch on its own, skipping the ones a previous attempt
   already finished; an event that can never succeed is recorded as failed with its
   reason and the rest of the batch goes on;
4. mark the delivery processed and drop the Redis copy of the body.

Transient failures (a service down) propagate to the task, which retries the delivery;
the work already committed is skipped on the next attempt.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog
from redis import Redis
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from shared.contract import Envelope, archive_object_key
from shared.formdata import FormDecodeError, decode_form, events_field
from shared.models import EventOutcome
from shared.objectstore import ObjectNotFoundError, ObjectStore
from worker import parsing, storage
from worker.errors import PermanentDeliveryError, is_rejected_row

log = structlog.get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class IngestContext:
    session_factory: Callable[[], AbstractContextManager[Session]]
    object_store: ObjectStore
    redis: Redis


@dataclass
class DeliveryResult:
    delivery_id: str
    event_count: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def load_body(ctx: IngestContext, envelope: Envelope) -> bytes:
    archive_key = archive_object_key(envelope.body_sha256)
    body: bytes | None = None
    if envelope.payload_store == "redis":
        body = ctx.redis.get(envelope.payload_key)  # type: ignore[assignment]
    if body is None:
        # Claim-checked, or archived by an earlier attempt that then dropped the Redis copy.
        try:
            body = ctx.object_store.get(archive_key)
        except ObjectNotFoundError:
            raise PermanentDeliveryError(
                "the body is neither in Redis nor in the archive"
            ) from None
    if hashlib.sha256(body).hexdigest() != envelope.body_sha256:
        raise PermanentDeliveryError("the body does not match the sha256 in its envelope")
    return body


def archive_body(ctx: IngestContext, envelope: Envelope, body: bytes) -> str:
    key = archive_object_key(envelope.body_sha256)
    if not ctx.object_store.exists(key):
        ctx.object_store.put(key, body, "application/x-www-form-urlencoded")
    return key


def process_delivery(ctx: IngestContext, envelope: Envelope) -> DeliveryResult:
    body = load_body(ctx, envelope)
    archive_key = archive_body(ctx, envelope, body)
    with ctx.session_factory() as session, session.begin():
        storage.record_delivery(session, envelope, archive_key)
        done = storage.finished_indexes(session, envelope.delivery_id)

    result = DeliveryResult(delivery_id=envelope.delivery_id)
    try:
        events = _read_batch(body)
    except parsing.BatchError as exc:
        with ctx.session_factory() as session, session.begin():
            storage.finish_delivery(session, envelope.delivery_id, event_count=None, error=str(exc))
        log.warning("delivery.unreadable", delivery_id=envelope.delivery_id, reason=str(exc))
        _drop_redis_copy(ctx, envelope)
        return result

    result.event_count = len(events)
    for index, event in enumerate(events):
        if index in done:
            continue
        result.count(process_event(ctx, envelope.delivery_id, index, event))

    with ctx.session_factory() as session, session.begin():
        storage.finish_delivery(session, envelope.delivery_id, event_count=len(events))
    _drop_redis_copy(ctx, envelope)
    return result


def _read_batch(body: bytes) -> list[Any]:
    try:
        value = events_field(decode_form(body))
    except FormDecodeError as exc:
        raise parsing.BatchError(str(exc)) from exc
    if value is None:
        raise parsing.BatchError("the body has no mandrill_events field")
    return parsing.parse_batch(value)


def _drop_redis_copy(ctx: IngestContext, envelope: Envelope) -> None:
    if envelope.payload_store == "redis":
        ctx.redis.delete(envelope.payload_key)


def process_event(ctx: IngestContext, delivery_id: str, index: int, event: Any) -> str:
    """Process one event and record its outcome; returns the outcome."""
    kind = parsing.event_kind(event)
    bound = log.bind(delivery_id=delivery_id, event_index=index, kind=kind)
    try:
        if kind == "inbound":
            outcome = _store_inbound(ctx, delivery_id, index, event)
        else:
            outcome = _store_event(ctx, delivery_id, index, kind, event)
    except Exception as exc:
        if not (isinstance(exc, parsing.PermanentEventError) or is_rejected_row(exc)):
            raise  # transient or unknown: the task decides whether to retry
        reason = _reason(exc)
        with ctx.session_factory() as session, session.begin():
            storage.record_outcome(
                session, delivery_id, index, kind, EventOutcome.FAILED, error=reason
            )
        bound.warning("event.failed", reason=reason)
        return EventOutcome.FAILED
    bound.info("event.processed", outcome=outcome)
    return outcome


def _store_inbound(ctx: IngestContext, delivery_id: str, index: int, event: Any) -> str:
    email = _parse(parsing.parse_inbound, event)
    storage.store_email_objects(ctx.object_store, email)
    with ctx.session_factory() as session, session.begin():
        email_id, created = storage.insert_email(session, email, delivery_id)
        outcome = storage.outcome_for(created)
        storage.record_outcome(session, delivery_id, index, "inbound", outcome, email_id=email_id)
    return outcome


def _store_event(ctx: IngestContext, delivery_id: str, index: int, kind: str, event: Any) -> str:
    parsed = _parse(parsing.parse_event, event)
    with ctx.session_factory() as session, session.begin():
        event_id, created = storage.insert_event(session, parsed, delivery_id)
        outcome = storage.outcome_for(created)
        storage.record_outcome(session, delivery_id, index, kind, outcome, event_id=event_id)
    return outcome


def _parse(parser: Callable[[Any], T], event: Any) -> T:
    """Run a pure parser; whatever it raises, it would raise again on the same input."""
    try:
        return parser(event)
    except parsing.PermanentEventError:
        raise
    except Exception as exc:
        # The exception text may quote the payload, so only its type and the line that
        # raised it are kept.
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        raise parsing.PermanentEventError(
            f"the parser failed with {type(exc).__name__} at {where}; reprocess after a fix"
        ) from exc


def _reason(exc: Exception) -> str:
    if isinstance(exc, DBAPIError):
        # The driver's first line names the column and the problem, not the row's content.
        detail = str(exc.orig).splitlines()[0] if str(exc.orig) else ""
        return f"database rejected the row: {type(exc.orig).__name__}: {detail}"[:500]
    return str(exc)[:500]
