"""The text of one content: every pending attachment row of a sha256 gets the same text,
converted once.

One transaction per content, under a transaction-level advisory lock on its sha256
(a second task for the same content, a redelivery or the sweep's, finds it taken and
leaves). In it: the pending rows are read; if a row of the same content already has a
final status from today's extractor and version, it is copied (no conversion); else the
bytes are converted (``worker.text.convert``), a ready text is put at
``text/<sha256>.md``, claimed back from any drain (``shared.lifecycle.objects``) and made
searchable (``worker.text.indexing``; a copied ready text too, if its search row is
missing), the rows are updated, and the held hand-offs of their emails released
(``worker.handoff.held``). A worker killed mid-way leaves the rows pending: the message
comes back (acks_late) or the sweep queues the content again.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import ColumnElement, func, literal_column, select, update
from sqlalchemy.orm import Session

from shared.contract import text_object_key
from shared.lifecycle.objects import reclaim
from shared.models import Attachment, Email
from shared.models.mail import CURRENT_TRANSACTION_ID
from shared.objectstore import ObjectNotFoundError, ObjectStore
from worker.handoff.held import held_email_ids, release_held
from worker.ingest.derive.text_formats import PENDING, READY, text_format
from worker.text import indexing
from worker.text.convert import CONVERSION_VERSION, Converted, Limits, convert, extractor

log = structlog.get_logger(__name__)

EXCERPT_CHARACTERS = 300
# The advisory lock's first key: this module's class of locks.
_LOCK_CLASS = 3232
_THIS_TRANSACTION: ColumnElement[int] = literal_column(CURRENT_TRANSACTION_ID)
_COPIED = (
    Attachment.text_status,
    Attachment.text_characters,
    Attachment.text_pages,
    Attachment.text_extractor,
    Attachment.text_version,
    Attachment.text_excerpt,
)


@dataclass(frozen=True)
class TextContext:
    session_factory: Callable[[], AbstractContextManager[Session]]
    object_store: ObjectStore
    limits: Limits
    # Schedules a released dispatch (the hand-off's publish task), after the commit.
    schedule_dispatch: Callable[[int], None]


def convert_content(ctx: TextContext, sha256: str) -> str:
    """Give every pending attachment row of ``sha256`` its text; the outcome."""
    with ctx.session_factory() as session, session.begin():
        locked = session.scalar(
            select(func.pg_try_advisory_xact_lock(_LOCK_CLASS, func.hashtext(sha256)))
        )
        if not locked:
            return "busy"
        rows = session.execute(
            select(
                Attachment.email_id,
                Attachment.filename,
                Attachment.content_type,
                Attachment.sniffed_type,
                Attachment.object_key,
            ).where(Attachment.sha256 == sha256, Attachment.text_status == PENDING)
        ).all()
        if not rows:
            return "nothing_pending"
        values = _copy_of_done(session, sha256)
        if values is None:
            first = rows[0]
            mime = text_format(first.filename, first.content_type, first.sniffed_type)
            converted = _convert(ctx, first.object_key, mime or "application/octet-stream")
            values = _values(converted)
            if converted.status == READY and converted.text is not None:
                _store_text(ctx.object_store, session, sha256, converted.text)
                indexing.index_text(session, sha256, converted.text)
            log.info(
                "text.converted",
                sha256=sha256,
                status=converted.status,
                pages=converted.pages,
                characters=values["text_characters"],
                seconds=round(converted.seconds, 3),
                error=converted.error,
            )
        elif values["text_status"] == READY and not indexing.is_indexed(session, sha256):
            _index_stored(ctx.object_store, session, sha256)
        session.execute(
            update(Attachment)
            .where(Attachment.sha256 == sha256, Attachment.text_status == PENDING)
            # The live feed's email.text_ready follows this transaction's id (api/stream).
            .values(**values, text_position=_THIS_TRANSACTION)
        )
        released = release_held(session, {row.email_id for row in rows})
    for dispatch_id in released:
        ctx.schedule_dispatch(dispatch_id)
    return str(values["text_status"])


def _copy_of_done(session: Session, sha256: str) -> dict[str, Any] | None:
    """The text columns of a row of the same content converted by today's extractor."""
    done = session.execute(
        select(*_COPIED)
        .where(
            Attachment.sha256 == sha256,
            Attachment.text_status.is_not(None),
            Attachment.text_status != PENDING,
            Attachment.text_extractor == extractor(),
            Attachment.text_version == CONVERSION_VERSION,
        )
        .limit(1)
    ).first()
    if done is None:
        return None
    return {column.key: value for column, value in zip(_COPIED, done, strict=True)}


def _convert(ctx: TextContext, object_key: str, mime: str) -> Converted:
    try:
        data = ctx.object_store.get(object_key)
    except ObjectNotFoundError:
        return Converted("skipped:removed")  # retention or erasure took the content
    return convert(data, mime, ctx.limits)


def _values(converted: Converted) -> dict[str, Any]:
    text = converted.text if converted.status == READY else None
    return {
        "text_status": converted.status,
        "text_characters": len(text) if text is not None else None,
        "text_pages": converted.pages,
        "text_extractor": extractor(),
        "text_version": CONVERSION_VERSION,
        "text_excerpt": text[:EXCERPT_CHARACTERS] if text is not None else None,
    }


def _store_text(store: ObjectStore, session: Session, sha256: str, text: str) -> None:
    """Put the text, then claim its key in this transaction: a drain that removed it
    meanwhile (an erasure of another email with the same content) is undone here."""
    key = text_object_key(sha256)
    data = text.encode("utf-8")
    store.put(key, data, "text/markdown; charset=utf-8")
    if reclaim(session, [key]):
        store.put(key, data, "text/markdown; charset=utf-8")


def _index_stored(store: ObjectStore, session: Session, sha256: str) -> bool:
    """Index the stored text of ``sha256`` (a ready text without its search row: stored
    before search existed, or copied from rows whose row a drain removed); claims the
    text object back first, as a conversion does. False if the object is gone."""
    found = indexing.read_text(store, sha256)
    if found is None:
        return False
    _store_text(store, session, sha256, found)
    indexing.index_text(session, sha256, found)
    return True


# Set once a sweep of this process found no ready text without its search row. Such
# texts exist only from before migration 0014 (a conversion indexes its text in its own
# transaction; a drain removes a row only once no row's text is ready), so the look for
# them, a scan of every ready content, is not repeated every minute once it comes back
# empty: once per process start.
_backfilled = False


def index_unindexed(ctx: TextContext) -> int:
    """The sweep's share of indexing: ready texts without a search row, a batch per run,
    each content in its own transaction under the conversion's lock."""
    global _backfilled  # noqa: PLW0603 - the process-wide "nothing left" of the comment above
    if _backfilled:
        return 0
    with ctx.session_factory() as session:
        shas = indexing.unindexed_contents(session)
    _backfilled = not shas
    done = 0
    for sha256 in shas:
        with ctx.session_factory() as session, session.begin():
            locked = session.scalar(
                select(func.pg_try_advisory_xact_lock(_LOCK_CLASS, func.hashtext(sha256)))
            )
            if locked and not indexing.is_indexed(session, sha256):
                done += _index_stored(ctx.object_store, session, sha256)
    return done


def pending_contents(session: Session, older_than_seconds: int, limit: int = 500) -> list[str]:
    """Contents with a row pending for longer than ``older_than_seconds`` (by its email's
    arrival): lost messages, killed workers, conversions queued by reprocessing."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds)
    return list(
        session.scalars(
            select(Attachment.sha256)
            .join(Email, Email.id == Attachment.email_id)
            .where(Attachment.text_status == PENDING, Email.received_at < cutoff)
            .group_by(Attachment.sha256)
            .limit(limit)
        )
    )


def release_stranded(session: Session) -> list[int]:
    """Release held dispatches whose emails wait for nothing any more (a crash between
    an attachment's last update and the release cannot happen: they share a
    transaction; this catches rows held by an email whose attachments all began final)."""
    ids = held_email_ids(session)
    return release_held(session, ids) if ids else []


def mark_stale(session: Session, *, dry_run: bool = False, batch: int = 5000) -> list[str]:
    """``kave reprocess --text``: make pending the rows whose text an older extractor or
    conversion version made, and the rows stored before text existed (NULL) whose format
    converts; the contents to queue."""
    from worker.ingest.derive.text_formats import initial_status

    stale = (
        Attachment.text_status.is_not(None)
        & (Attachment.text_status != PENDING)
        & (Attachment.text_status.not_in(("skipped:type", "skipped:container", "skipped:empty")))
        & (
            (Attachment.text_extractor.is_distinct_from(extractor()))
            | (Attachment.text_version.is_distinct_from(CONVERSION_VERSION))
        )
    )
    shas = set(session.scalars(select(Attachment.sha256).where(stale).distinct()))
    unset = session.execute(
        select(
            Attachment.id,
            Attachment.sha256,
            Attachment.filename,
            Attachment.content_type,
            Attachment.sniffed_type,
            Attachment.size,
        )
        .where(Attachment.text_status.is_(None), Attachment.content_removed_at.is_(None))
        .limit(batch)
    ).all()
    firsts = {
        row.id: initial_status(row.filename, row.content_type, row.sniffed_type, row.size)
        for row in unset
    }
    shas.update(row.sha256 for row in unset if firsts[row.id] == PENDING)
    if not dry_run:
        session.execute(update(Attachment).where(stale).values(text_status=PENDING))
        for status in set(firsts.values()):
            ids = [row_id for row_id, first in firsts.items() if first == status]
            session.execute(
                update(Attachment).where(Attachment.id.in_(ids)).values(text_status=status)
            )
    return sorted(shas)
