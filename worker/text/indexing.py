"""Attachment text made searchable: the ``attachment_texts`` row of a content whose text
is ready (migration 0014; searched by api/search/sources.py).

Written in the transaction that makes the rows ready, after the text object's key was
claimed back from any drain (``reclaim``): a drain that removed the object meanwhile
has committed by then, so its deletion of the row cannot undo this one, and the two
never wait on each other's locks in opposite order. Removed when the text object goes
(shared/lifecycle/objects.py).

Texts that were ready before this existed (or whose row a race lost) are indexed by the
text sweep from their objects, ``SWEEP_BATCH`` contents per run.
"""

from __future__ import annotations

from typing import Final

import structlog
from sqlalchemy import exists, select, text
from sqlalchemy.orm import Session

from shared.contract import text_object_key
from shared.models import Attachment, AttachmentText
from shared.objectstore import ObjectNotFoundError, ObjectStore

log = structlog.get_logger(__name__)

# The characters of a text that are indexed (and kept for snippets). A tsvector holds at
# most 1 MB: 100,000 characters (at most 400 kB of UTF-8, 50,000 words) stay well
# below it, as the email's own texts do (migration 0013). About 30 pages of prose.
INDEXED_CHARACTERS: Final = 100_000
SWEEP_BATCH: Final = 50

_UPSERT = text(
    "INSERT INTO attachment_texts (sha256, text, search_document) "
    "VALUES (:sha256, :text, to_tsvector('simple'::regconfig, :text)) "
    "ON CONFLICT (sha256) DO UPDATE SET text = excluded.text, "
    "search_document = excluded.search_document, indexed_at = now()"
)


def index_text(session: Session, sha256: str, content: str) -> None:
    """Make ``content`` (the text of ``sha256``) searchable, replacing an older version."""
    # NUL cannot be stored in a PostgreSQL text value.
    bounded = content[:INDEXED_CHARACTERS].replace("\x00", " ")
    session.execute(_UPSERT, {"sha256": sha256, "text": bounded})


def is_indexed(session: Session, sha256: str) -> bool:
    return bool(session.scalar(select(exists().where(AttachmentText.sha256 == sha256))))


def unindexed_contents(session: Session, limit: int = SWEEP_BATCH) -> list[str]:
    """Contents whose text is ready but not searchable (through the partial index of the
    ready rows: the ready contents are read in order, each checked by primary key)."""
    ready = (
        select(Attachment.sha256)
        .where(Attachment.text_status == "ready", Attachment.content_removed_at.is_(None))
        .where(~exists().where(AttachmentText.sha256 == Attachment.sha256))
        .distinct()
        .limit(limit)
    )
    return list(session.scalars(ready))


def read_text(store: ObjectStore, sha256: str) -> str | None:
    """The stored text of ``sha256`` (its indexed part), or None if the object is gone."""
    try:
        data = store.get(text_object_key(sha256))
    except ObjectNotFoundError:
        return None
    return data.decode("utf-8", errors="replace")
