"""Retention: ``kave purge`` and its beat task delete what is older than the policy.

Each kind has its own age in days (``KAVE_RETENTION_*_DAYS``, 0 keeps it forever),
counted from when the row arrived, and goes in this order:

1. ``dead_letters``: replayed or discarded dead letters (open ones wait for an operator);
2. ``events``: tracking and sync event rows (their delivery outcomes stay, without id);
3. ``emails``: email rows with their attachment rows; their objects are queued;
4. ``raw_messages``: the raw message object of emails that are kept (the row is marked
   ``raw_removed_at``: its fields stay readable, its original no longer downloads);
5. ``attachments``: attachment objects of emails that are kept (rows marked
   ``content_removed_at``; the object stays while a younger email names the same content);
6. ``archive``: raw webhook archives of finished deliveries without an open dead letter
   (the delivery is marked ``archive_removed_reason = 'retention'``: no more reprocessing);
7. ``deliveries``: delivery rows (with their outcomes and dead letters) once no email or
   event row still points at them.

Every batch of rows commits in one transaction together with the keys of the objects it
released (``object_deletions``); then the objects no row names any more are removed. A
purge killed at any point leaves rows that name only existing objects plus a to-do list:
run it again and it finishes. Progress is reported after every batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Select, delete, exists, func, select, update
from sqlalchemy.orm import Session

from shared.lifecycle.objects import (
    DrainResult,
    SessionFactory,
    drain,
    queue_deletions,
    text_keys,
)
from shared.models import (
    Attachment,
    DeadLetter,
    DeadLetterStatus,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Email,
    Event,
)
from shared.objectstore import ObjectStore
from shared.settings import Settings

log = structlog.get_logger(__name__)

KINDS = (
    "dead_letters",
    "events",
    "emails",
    "raw_messages",
    "attachments",
    "archive",
    "deliveries",
)
REASON = "retention"

Progress = Callable[[str, int], None]


@dataclass
class PurgeReport:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    objects: DrainResult = field(default_factory=DrainResult)
    finished: bool = True  # False: stopped at the time budget, the next run continues


def retention_days(settings: Settings) -> dict[str, int]:
    return {
        "dead_letters": settings.retention_dead_letters_days,
        "events": settings.retention_events_days,
        "emails": settings.retention_emails_days,
        "raw_messages": settings.retention_raw_messages_days,
        "attachments": settings.retention_attachments_days,
        "archive": settings.retention_archive_days,
        "deliveries": settings.retention_deliveries_days,
    }


def purge(
    session_factory: SessionFactory,
    store: ObjectStore,
    settings: Settings,
    *,
    progress: Progress | None = None,
    stop_after_seconds: float | None = None,
) -> PurgeReport:
    report = PurgeReport()
    say = progress or (lambda _kind, _count: None)
    started = time.monotonic()
    now = datetime.now(UTC)
    batch = settings.purge_batch_size

    def out_of_time() -> bool:
        return stop_after_seconds is not None and time.monotonic() - started > stop_after_seconds

    for kind, days in retention_days(settings).items():
        if not days:
            continue
        step = _STEPS[kind]
        cutoff = now - timedelta(days=days)
        while True:
            if out_of_time():
                report.finished = False
                break
            with session_factory() as session, session.begin():
                done = step(session, cutoff, batch)
            if not done:
                break
            report.counts[kind] += done
            say(kind, report.counts[kind])
        if not report.finished:
            break

    # Also the to-do list of earlier runs and erasures that were interrupted.
    report.objects = drain(
        session_factory,
        store,
        grace_seconds=settings.orphan_grace_seconds,
        batch_size=batch,
        progress=lambda result: say("objects", result.deleted),
        should_stop=out_of_time,
    )
    report.finished = report.finished and not out_of_time()
    log.info(
        "purge.finished",
        finished=report.finished,
        objects_deleted=report.objects.deleted,
        objects_deferred=report.objects.deferred,
        **report.counts,
    )
    return report


def _ids(session: Session, query: Select[Any], batch: int) -> list[Any]:
    # SKIP LOCKED: a second purge (beat and a person at once) takes other rows.
    return list(session.scalars(query.limit(batch).with_for_update(skip_locked=True)))


_OPEN_DEAD_LETTER = exists().where(
    DeadLetter.delivery_id == Delivery.id, DeadLetter.status == DeadLetterStatus.OPEN
)


_CANDIDATES: dict[str, Callable[[datetime], Select[Any]]] = {
    "dead_letters": lambda cutoff: select(DeadLetter.id).where(
        DeadLetter.status != DeadLetterStatus.OPEN,
        func.coalesce(DeadLetter.resolved_at, DeadLetter.last_seen_at) < cutoff,
    ),
    "events": lambda cutoff: select(Event.id).where(Event.created_at < cutoff),
    "emails": lambda cutoff: select(Email.id).where(Email.received_at < cutoff),
    "raw_messages": lambda cutoff: select(Email.id).where(
        Email.received_at < cutoff, Email.raw_removed_at.is_(None)
    ),
    "attachments": lambda cutoff: (
        select(Attachment.id)
        .join(Email, Email.id == Attachment.email_id)
        .where(Email.received_at < cutoff, Attachment.content_removed_at.is_(None))
    ),
    "archive": lambda cutoff: select(Delivery.id).where(
        Delivery.received_at < cutoff,
        Delivery.archive_removed_at.is_(None),
        Delivery.status != DeliveryStatus.RECEIVED,
        ~_OPEN_DEAD_LETTER,
    ),
    "deliveries": lambda cutoff: select(Delivery.id).where(
        Delivery.received_at < cutoff,
        Delivery.status != DeliveryStatus.RECEIVED,
        ~_OPEN_DEAD_LETTER,
        ~exists().where(Email.delivery_id == Delivery.id),
        ~exists().where(Event.delivery_id == Delivery.id),
    ),
}


def candidates(kind: str, cutoff: datetime) -> Select[Any]:
    """The ids of what ``kind``'s retention would remove now."""
    return _CANDIDATES[kind](cutoff)


def would_purge(session_factory: SessionFactory, settings: Settings) -> dict[str, int]:
    """What each kind's retention would remove now (each counted as things stand: rows a
    previous kind would delete first are still counted by the later ones)."""
    now = datetime.now(UTC)
    found = dict.fromkeys(KINDS, 0)
    with session_factory() as session:
        for kind, days in retention_days(settings).items():
            if days:
                query = candidates(kind, now - timedelta(days=days)).subquery()
                found[kind] = session.scalar(select(func.count()).select_from(query)) or 0
    return found


def _dead_letters(session: Session, cutoff: datetime, batch: int) -> int:
    ids = _ids(session, candidates("dead_letters", cutoff), batch)
    session.execute(delete(DeadLetter).where(DeadLetter.id.in_(ids)))
    return len(ids)


def _events(session: Session, cutoff: datetime, batch: int) -> int:
    ids = _ids(session, candidates("events", cutoff), batch)
    session.execute(
        update(DeliveryEvent).where(DeliveryEvent.event_id.in_(ids)).values(event_id=None)
    )
    session.execute(delete(Event).where(Event.id.in_(ids)))
    return len(ids)


def _emails(session: Session, cutoff: datetime, batch: int) -> int:
    ids = _ids(session, candidates("emails", cutoff), batch)
    if not ids:
        return 0
    keys = set(
        session.scalars(
            select(Email.raw_key).where(Email.id.in_(ids), Email.raw_removed_at.is_(None))
        )
    )
    keys.update(
        session.scalars(
            select(Attachment.object_key).where(
                Attachment.email_id.in_(ids), Attachment.content_removed_at.is_(None)
            )
        )
    )
    keys.update(
        text_keys(session.scalars(select(Attachment.sha256).where(Attachment.email_id.in_(ids))))
    )
    session.execute(
        update(DeliveryEvent).where(DeliveryEvent.email_id.in_(ids)).values(email_id=None)
    )
    session.execute(delete(Attachment).where(Attachment.email_id.in_(ids)))
    session.execute(delete(Email).where(Email.id.in_(ids)))
    queue_deletions(session, keys)
    return len(ids)


def _release(session: Session, model: Any, ids: list[Any], key_column: Any, **removed: Any) -> int:
    """Mark rows as no longer holding their object (the row stays) and queue the objects."""
    if not ids:
        return 0
    keys = session.scalars(
        update(model).where(model.id.in_(ids)).values(**removed).returning(key_column)
    ).all()
    queue_deletions(session, keys)
    return len(ids)


def _raw_messages(session: Session, cutoff: datetime, batch: int) -> int:
    ids = _ids(session, candidates("raw_messages", cutoff), batch)
    return _release(session, Email, ids, Email.raw_key, raw_removed_at=func.now())


def _attachments(session: Session, cutoff: datetime, batch: int) -> int:
    ids = _ids(session, candidates("attachments", cutoff), batch)
    # The text goes with the content it was made from.
    shas = session.scalars(select(Attachment.sha256).where(Attachment.id.in_(ids))).all()
    queue_deletions(session, text_keys(shas))
    return _release(session, Attachment, ids, Attachment.object_key, content_removed_at=func.now())


def _archive(session: Session, cutoff: datetime, batch: int) -> int:
    ids = _ids(session, candidates("archive", cutoff), batch)
    return _release(
        session,
        Delivery,
        ids,
        Delivery.archive_key,
        archive_removed_at=func.now(),
        archive_removed_reason=REASON,
    )


def _deliveries(session: Session, cutoff: datetime, batch: int) -> int:
    ids = _ids(session, candidates("deliveries", cutoff), batch)
    if not ids:
        return 0
    keys = session.scalars(
        select(Delivery.archive_key).where(
            Delivery.id.in_(ids), Delivery.archive_removed_at.is_(None)
        )
    ).all()
    # Outcomes and dead letters go with their delivery (ON DELETE CASCADE).
    session.execute(delete(Delivery).where(Delivery.id.in_(ids)))
    queue_deletions(session, keys)
    return len(ids)


_STEPS: dict[str, Callable[[Session, datetime, int], int]] = {
    "dead_letters": _dead_letters,
    "events": _events,
    "emails": _emails,
    "raw_messages": _raw_messages,
    "attachments": _attachments,
    "archive": _archive,
    "deliveries": _deliveries,
}
