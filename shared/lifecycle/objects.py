"""Object keys the rows still name, and the removal of objects no row names.

A key is referenced while any of these names it: an email's ``raw_key`` (unless its
raw message was removed), an attachment's ``object_key`` (unless its content was
removed; several attachment rows share one content-addressed key), its text object
``text/<sha256>.md`` (while such a row's text is ready; its search row in
``attachment_texts`` is removed with it) or a delivery's ``archive_key`` (unless its
archive was removed). Whoever deletes or unlinks such rows
queues the keys in ``object_deletions`` in the same transaction; :func:`drain` then
removes each object whose key no row names.

Objects are content-addressed, so a worker may be uploading the very content a drain is
about to remove, for a new email that will name it. Two things keep that email whole:

- an object written less than ``grace`` ago is left (its entry waits for a later run),
  unless an erasure queued it (``without_grace``): erased content goes at once, and the
  next point alone keeps a concurrent writer's email whole;
- each key is drained in a transaction (a group of ``DRAIN_GROUP`` keys per transaction,
  an erasure's own keys one each) that holds its ``object_deletions`` row locked
  from the reference check to the delete, and leaves the row behind as a tombstone
  (``object_deleted_at``). A worker commits the rows of a new email together with
  :func:`reclaim`, which deletes the entries of the email's keys (waiting for a drain that
  holds one) and names the keys a drain removed meanwhile: the worker puts those objects
  back before it commits, from the bytes it still holds. Tombstones older than
  ``TOMBSTONE_SECONDS`` (far beyond any task's time limit) are forgotten.

The grace is still what protects a body the receiver claim-checked into the archive
moments ago (it holds no row yet, and no other copy): an erasure of an identical batch
removes that one too, which is the batch it erases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import (
    CompoundSelect,
    CursorResult,
    Executable,
    case,
    delete,
    func,
    literal,
    select,
    text,
    union,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.contract import TEXT_PREFIX, text_key_sha256, text_object_key
from shared.models import Attachment, AttachmentText, Delivery, Email, ObjectDeletion
from shared.objectstore import ObjectStore

log = structlog.get_logger(__name__)

SessionFactory = Callable[[], AbstractContextManager[Session]]

# How long a drained key's tombstone is kept: longer than any worker takes between
# uploading an email's objects and committing its rows (the task time limit).
TOMBSTONE_SECONDS = 86400
# Keys a drain handles per transaction (their entries stay locked while their objects
# are deleted: a worker reclaiming one of them waits at most that long).
DRAIN_GROUP = 50


def referenced_keys_query(keys: Iterable[str] | None = None) -> CompoundSelect[Any]:
    """A SELECT of every key a row still names (only among ``keys`` when given)."""
    raw = select(Email.raw_key.label("key")).where(Email.raw_removed_at.is_(None))
    content = select(Attachment.object_key.label("key")).where(
        Attachment.content_removed_at.is_(None)
    )
    archive = select(Delivery.archive_key.label("key")).where(Delivery.archive_removed_at.is_(None))
    # An attachment's text (text/<sha256>.md) lives as long as a row that holds the content
    # says its text is ready.
    texts = select((literal(TEXT_PREFIX) + Attachment.sha256 + literal(".md")).label("key")).where(
        Attachment.content_removed_at.is_(None), Attachment.text_status == "ready"
    )
    if keys is not None:
        wanted = list(keys)
        raw = raw.where(Email.raw_key.in_(wanted))
        content = content.where(Attachment.object_key.in_(wanted))
        archive = archive.where(Delivery.archive_key.in_(wanted))
        shas = [sha for key in wanted if (sha := text_key_sha256(key)) is not None]
        texts = texts.where(Attachment.sha256.in_(shas))
    return union(raw, content, archive, texts)


def text_keys(shas: Iterable[str]) -> set[str]:
    """The text objects of attachments of these contents (queued with their rows' keys)."""
    return {text_object_key(sha) for sha in shas}


def rowcount(session: Session, statement: Executable) -> int:
    """Rows an UPDATE or DELETE touched."""
    result = session.execute(statement)
    return cast(CursorResult[Any], result).rowcount


def referenced(session: Session, keys: Iterable[str]) -> set[str]:
    return set(session.scalars(referenced_keys_query(keys)))


def queue_deletions(session: Session, keys: Iterable[str], *, without_grace: bool = False) -> int:
    """Queue keys whose rows this transaction removes (idempotent; a tombstone of an
    earlier drain becomes a pending entry again). ``without_grace``: an erasure's keys,
    removed by the next drain whatever the object's age; a pending entry keeps the flag
    once it has it."""
    rows = [{"key": key, "without_grace": without_grace} for key in sorted(set(keys)) if key]
    if rows:
        statement = insert(ObjectDeletion).values(rows)
        pending = ObjectDeletion.object_deleted_at.is_(None)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[ObjectDeletion.key],
                set_={
                    "queued_at": func.now(),
                    "object_deleted_at": None,
                    "without_grace": case(
                        (pending, ObjectDeletion.without_grace | statement.excluded.without_grace),
                        else_=statement.excluded.without_grace,
                    ),
                },
            )
        )
    return len(rows)


_RECLAIM = text(
    "DELETE FROM object_deletions WHERE key = ANY(:keys) RETURNING key, object_deleted_at"
)


def reclaim(session: Session, keys: Iterable[str]) -> list[str]:
    """Cancel the pending deletions of ``keys`` for rows this transaction writes; the
    keys whose objects a drain already removed (the caller puts them back before it
    commits). Waits for a drain that is working on one of them."""
    # Plain SQL: this runs in every worker transaction that stores an email, where
    # building the ORM statement cost more than the round trip.
    gone = session.execute(_RECLAIM, {"keys": sorted(set(keys))})
    return [key for key, deleted_at in gone if deleted_at is not None]


class ArchiveRemovedMeanwhileError(RuntimeError):
    """A drain removed a delivery's archive between the worker's upload and its commit:
    the attempt is rolled back and retried, which writes the archive again (transient)."""


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
    wait_for_workers: bool = False,
) -> DrainResult:
    """Remove the queued objects no row names (only ``keys`` among them when given);
    ``should_stop`` is asked between batches (what is left waits for the next run).

    An entry a committing worker holds (``reclaim``) is skipped, as another drain's is;
    with ``wait_for_workers`` (an erasure's own keys) the drain waits for that commit
    instead, so that a rolled-back worker leaves no object of the erasure behind."""
    total = DrainResult()
    only = sorted(set(keys)) if keys is not None else None
    after = ""
    while not (should_stop and should_stop()):
        query = select(ObjectDeletion.key).where(
            ObjectDeletion.key > after, ObjectDeletion.object_deleted_at.is_(None)
        )
        if only is not None:
            query = query.where(ObjectDeletion.key.in_(only))
        with session_factory() as session:
            batch = list(session.scalars(query.order_by(ObjectDeletion.key).limit(batch_size)))
        if not batch:
            break
        after = batch[-1]
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        result = DrainResult()
        # An erasure's own keys one by one, each waiting for its lock; others a group per
        # transaction, locked with SKIP LOCKED (so no wait, and no deadlock with a worker).
        group = 1 if wait_for_workers else DRAIN_GROUP
        for start in range(0, len(batch), group):
            keys_now = batch[start : start + group]
            _drain_keys(session_factory, store, keys_now, cutoff, result, wait=wait_for_workers)
        if result.deleted:
            log.info("objects.deleted", count=result.deleted, deferred=result.deferred)
        total.add(result)
        if progress:
            progress(total)
    _forget_tombstones(session_factory)
    return total


def _drain_keys(
    session_factory: SessionFactory,
    store: ObjectStore,
    keys: list[str],
    cutoff: datetime,
    result: DrainResult,
    *,
    wait: bool = False,
) -> None:
    """Some keys, in one transaction that keeps their entries locked until their objects
    are gone (see the module docstring): one reference check for all of them, instead of
    a transaction and three lookups per key (a purge of a year's archives drained ~25
    keys/s that way on the bench machine)."""
    with session_factory() as session, session.begin():
        entries = list(
            session.scalars(
                select(ObjectDeletion)
                .where(ObjectDeletion.key.in_(keys), ObjectDeletion.object_deleted_at.is_(None))
                .order_by(ObjectDeletion.key)
                .with_for_update(skip_locked=not wait)
            )
        )
        if not entries:
            return  # reclaimed by a worker, or another drain has them
        named = referenced(session, [entry.key for entry in entries])
        for entry in entries:
            if entry.key in named:
                result.still_referenced += 1
                session.delete(entry)
                continue
            found = store.stat(entry.key)
            if found is not None and not entry.without_grace and found.modified_at > cutoff:
                result.deferred += 1
                continue
            if found is not None:
                store.delete(entry.key)
                result.deleted += 1
            entry.object_deleted_at = datetime.now(UTC)
            if (sha256 := text_key_sha256(entry.key)) is not None:
                # Its searchable copy (worker/text/indexing.py) goes with the text.
                session.execute(delete(AttachmentText).where(AttachmentText.sha256 == sha256))


def _forget_tombstones(session_factory: SessionFactory) -> None:
    cutoff = datetime.now(UTC) - timedelta(seconds=TOMBSTONE_SECONDS)
    with session_factory() as session, session.begin():
        session.execute(delete(ObjectDeletion).where(ObjectDeletion.object_deleted_at < cutoff))
