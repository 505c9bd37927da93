"""Object keys the rows still name, and the removal of objects no row names.

A key is referenced while any of these names it: an email's ``raw_key`` (unless its
raw message was removed), an attachment's ``object_key`` (unless its content was
removed; several attachment rows share one content-addressed key) or a delivery's
``archive_key`` (unless its archive was removed). Whoever deletes or unlinks such rows
queues the keys in ``object_deletions`` in the same transaction; :func:`drain` then
removes each object whose key no row names, and forgets the entry.

An object written less than ``grace`` ago is left (and its entry kept for the next run):
workers write objects before the rows that name them, so a fresh copy of the same
content may be about to be referenced again. Between the age check and the delete there
remains a window of one request; ``kave audit`` would report a row it left without its
object, and ``kave reprocess`` restores it from the archive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import CompoundSelect, CursorResult, Executable, delete, select, union
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.models import Attachment, Delivery, Email, ObjectDeletion
from shared.objectstore import ObjectStore

log = structlog.get_logger(__name__)

SessionFactory = Callable[[], AbstractContextManager[Session]]


def referenced_keys_query(keys: Iterable[str] | None = None) -> CompoundSelect[Any]:
    """A SELECT of every key a row still names (only among ``keys`` when given)."""
    raw = select(Email.raw_key.label("key")).where(Email.raw_removed_at.is_(None))
    content = select(Attachment.object_key.label("key")).where(
        Attachment.content_removed_at.is_(None)
    )
    archive = select(Delivery.archive_key.label("key")).where(Delivery.archive_removed_at.is_(None))
    if keys is not None:
        wanted = list(keys)
        raw = raw.where(Email.raw_key.in_(wanted))
        content = content.where(Attachment.object_key.in_(wanted))
        archive = archive.where(Delivery.archive_key.in_(wanted))
    return union(raw, content, archive)


def rowcount(session: Session, statement: Executable) -> int:
    """Rows an UPDATE or DELETE touched."""
    result = session.execute(statement)
    return cast(CursorResult[Any], result).rowcount


def referenced(session: Session, keys: Iterable[str]) -> set[str]:
    return set(session.scalars(referenced_keys_query(keys)))


def queue_deletions(session: Session, keys: Iterable[str]) -> int:
    """Queue keys whose rows this transaction removes (idempotent)."""
    rows = [{"key": key} for key in sorted(set(keys)) if key]
    if rows:
        session.execute(insert(ObjectDeletion).values(rows).on_conflict_do_nothing())
    return len(rows)


@dataclass
class DrainResult:
    deleted: int = 0
    still_referenced: int = 0  # a row names it again: the entry is dropped, the object kept
    deferred: int = 0  # written within the grace period: kept for a later run

    def add(self, other: DrainResult) -> None:
        self.deleted += other.deleted
        self.still_referenced += other.still_referenced
        self.deferred += other.deferred


def drain(
    session_factory: SessionFactory,
    store: ObjectStore,
    *,
    grace_seconds: int,
    keys: Iterable[str] | None = None,
    batch_size: int = 500,
    progress: Callable[[DrainResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> DrainResult:
    """Remove the queued objects no row names (only ``keys`` among them when given);
    ``should_stop`` is asked between batches (what is left waits for the next run)."""
    total = DrainResult()
    only = sorted(set(keys)) if keys is not None else None
    after = ""
    while not (should_stop and should_stop()):
        query = select(ObjectDeletion.key).where(ObjectDeletion.key > after)
        if only is not None:
            query = query.where(ObjectDeletion.key.in_(only))
        with session_factory() as session:
            batch = list(session.scalars(query.order_by(ObjectDeletion.key).limit(batch_size)))
        if not batch:
            break
        after = batch[-1]
        result = _drain_batch(session_factory, store, batch, grace_seconds)
        total.add(result)
        if progress:
            progress(total)
    return total


def _drain_batch(
    session_factory: SessionFactory, store: ObjectStore, keys: list[str], grace_seconds: int
) -> DrainResult:
    result = DrainResult()
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
    done: list[str] = []
    with session_factory() as session:
        named = referenced(session, keys)
    for key in keys:
        if key in named:
            result.still_referenced += 1
            done.append(key)
            continue
        found = store.stat(key)
        if found is not None and found.modified_at > cutoff:
            result.deferred += 1
            continue
        if found is not None:
            store.delete(key)
            result.deleted += 1
        done.append(key)
    with session_factory() as session, session.begin():
        session.execute(delete(ObjectDeletion).where(ObjectDeletion.key.in_(done)))
    if result.deleted:
        log.info("objects.deleted", count=result.deleted, deferred=result.deferred)
    return result
