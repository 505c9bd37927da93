"""``kave audit``: the object store compared with the rows.

Kinds of inconsistency, each counted:

- ``unreferenced_objects``: objects no row names, written more than the grace period
  ago (younger ones may be about to be named: a worker writes objects before rows);
- ``missing_raw_messages``, ``missing_attachments``, ``missing_texts`` (an attachment
  whose text is ready, without its ``text/<sha256>.md``), ``missing_archives``: rows whose
  object is not in the store (and was not removed on purpose by retention or erasure;
  a delivery whose body was already lost when it arrived is reported by its
  ``unreadable`` dead letter instead);
- ``unfinished_deliveries``: deliveries still ``received`` with no attempt for longer
  than ``unfinished_grace_seconds`` (by default reconciliation's age plus its interval:
  by then reconciliation should have queued them again);
- ``events_without_outcome``: finished deliveries with fewer recorded event outcomes
  than events in their batch.

``repair`` removes unreferenced objects (rechecking each just before) and the pending
deletions of earlier runs; it never deletes or changes rows. Every run is recorded in
``audit_runs``: the newest feeds ``kave_audit_inconsistencies{kind}`` (see
``api/pipeline_metrics.py``). The listing holds one set of keys in memory: fine for millions of
objects, not for billions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import and_, exists, func, select

from shared.contract import text_object_key
from shared.lifecycle.objects import SessionFactory, drain, referenced, referenced_keys_query
from shared.models import (
    Attachment,
    AuditRun,
    DeadLetter,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Email,
)
from shared.objectstore import ObjectStore

log = structlog.get_logger(__name__)

KINDS = (
    "unreferenced_objects",
    "missing_raw_messages",
    "missing_attachments",
    "missing_texts",
    "missing_archives",
    "unfinished_deliveries",
    "events_without_outcome",
)
SAMPLE = 20  # keys or ids shown per kind


@dataclass
class AuditReport:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    samples: dict[str, list[str]] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)
    objects_listed: int = 0

    def found(self, kind: str, items: list[str]) -> None:
        self.counts[kind] = len(items)
        if items:
            self.samples[kind] = sorted(items)[:SAMPLE]

    @property
    def remaining(self) -> dict[str, int]:
        return {k: v - self.repaired.get(k, 0) for k, v in self.counts.items()}

    @property
    def clean(self) -> bool:
        return not any(self.remaining.values())


def run_audit(
    session_factory: SessionFactory,
    store: ObjectStore,
    *,
    grace_seconds: int,
    unfinished_grace_seconds: int | None = None,
    repair: bool = False,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    say = progress or (lambda _message: None)
    report = AuditReport()
    now = datetime.now(UTC)
    cutoff = now - timedelta(seconds=grace_seconds)
    stuck = now - timedelta(
        seconds=grace_seconds if unfinished_grace_seconds is None else unfinished_grace_seconds
    )
    if repair:
        # Earlier runs' to-do lists first: those objects are expected to go.
        drained = drain(session_factory, store, grace_seconds=grace_seconds)
        if drained.deleted:
            say(f"removed {drained.deleted} objects queued for deletion by earlier runs")

    say(f"listing {store.describe()}")
    listed = {o.key: o.modified_at for o in store.list_objects()}
    report.objects_listed = len(listed)
    with session_factory() as session:
        named = set(session.scalars(referenced_keys_query()))
    # A key listed before its row committed looks unreferenced: ask again for those.
    candidates = [k for k, when in listed.items() if k not in named and when <= cutoff]
    with session_factory() as session:
        again = referenced(session, candidates) if candidates else set()
    unreferenced = [k for k in candidates if k not in again]
    report.found("unreferenced_objects", unreferenced)

    say("checking rows against the store")
    with session_factory() as session:
        raw_keys = set(session.scalars(select(Email.raw_key).where(Email.raw_removed_at.is_(None))))
        attachment_keys = set(
            session.scalars(
                select(Attachment.object_key).where(Attachment.content_removed_at.is_(None))
            )
        )
        known_lost = exists().where(
            DeadLetter.delivery_id == Delivery.id,
            DeadLetter.event_index.is_(None),
            DeadLetter.error_class == "unreadable",
        )
        archive_keys = set(
            session.scalars(
                select(Delivery.archive_key).where(
                    Delivery.archive_removed_at.is_(None),
                    ~known_lost,
                    # An unfinished young delivery may still have its body only in Redis.
                    (Delivery.status != DeliveryStatus.RECEIVED) | (Delivery.created_at <= cutoff),
                )
            )
        )
        text_keys = {
            text_object_key(sha)
            for sha in session.scalars(
                select(Attachment.sha256).where(
                    Attachment.content_removed_at.is_(None), Attachment.text_status == "ready"
                )
            )
        }
    for kind, keys in (
        ("missing_raw_messages", raw_keys),
        ("missing_attachments", attachment_keys),
        ("missing_texts", text_keys),
        ("missing_archives", archive_keys),
    ):
        # Rows written after the listing name objects it could not see: check those.
        absent = [k for k in keys - listed.keys() if not store.exists(k)]
        report.found(kind, absent)

    with session_factory() as session:
        unfinished = session.scalars(
            select(Delivery.id).where(
                Delivery.status == DeliveryStatus.RECEIVED,
                func.coalesce(Delivery.last_attempt_at, Delivery.created_at) <= stuck,
            )
        ).all()
        outcomes = (
            select(func.count())
            .select_from(DeliveryEvent)
            .where(DeliveryEvent.delivery_id == Delivery.id)
            .scalar_subquery()
        )
        short = session.scalars(
            select(Delivery.id).where(
                and_(
                    Delivery.status == DeliveryStatus.PROCESSED,
                    Delivery.event_count.is_not(None),
                    outcomes < Delivery.event_count,
                )
            )
        ).all()
    report.found("unfinished_deliveries", list(unfinished))
    report.found("events_without_outcome", list(short))

    if repair and unreferenced:
        say(f"removing {len(unreferenced)} unreferenced objects")
        report.repaired["unreferenced_objects"] = _remove_unreferenced(
            session_factory, store, unreferenced, cutoff
        )

    with session_factory() as session, session.begin():
        session.add(AuditRun(counts=report.remaining, repaired=report.repaired))
    log.info("audit.finished", **report.remaining, repaired=sum(report.repaired.values()))
    return report


def _remove_unreferenced(
    session_factory: SessionFactory, store: ObjectStore, keys: list[str], cutoff: datetime
) -> int:
    removed = 0
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        with session_factory() as session:
            named = referenced(session, batch)
        for key in batch:
            found = store.stat(key)
            # Named again, or written again since the listing: leave it.
            if key in named or found is None or found.modified_at > cutoff:
                continue
            store.delete(key)
            removed += 1
    return removed
