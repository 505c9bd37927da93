"""The search query: a tsquery in every configuration an email may use, the filters, the
caller's mailboxes, newest first by keyset (received_at, id), and a ts_headline snippet of
each hit.

Newest first rather than by rank: a page is then a keyset range (stable under new mail,
no repeats across pages) and costs the same on page 1 and page 100; agents ask for "the
invoice from ACME last month" and narrow by filters. Snippets are computed for the page's
rows only, over a bounded start of their text (snippets.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import ARRAY, ColumnElement, Text, select, text, tuple_, union
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.orm import Session

from api.filters import mail_conditions
from api.search import snippets
from api.search.language import SEARCH_CONFIGS
from api.search.sources import SOURCES
from shared.models import Email

# worker.ingest.trust's verdicts on the visible From: (emails.sender_trust).
SenderTrust = Literal["pass", "fail", "none", "unknown"]

# Each configuration's reading of the words, parenthesised and OR-ed: one constant
# tsquery, so the GIN index answers it in one scan. Empty when the words are all stop words.
_COMBINED_QUERY = text(
    "SELECT string_agg(DISTINCT '(' || q::text || ')', ' | ') FROM ("
    " SELECT websearch_to_tsquery(c::regconfig, :words) AS q FROM unnest(:configs) AS c"
    ") AS parsed WHERE q::text <> ''"
).bindparams(sa.bindparam("configs", type_=ARRAY(Text)))


@dataclass(frozen=True, slots=True)
class SearchFilters:
    sender: str | None = None
    recipient: str | None = None
    mailbox_hash: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    has_attachments: bool | None = None
    bulk: bool | None = None
    sender_trust: SenderTrust | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    id: int
    conversation_id: str | None
    received_at: datetime
    from_address: str | None
    from_name: str | None
    envelope_recipient: str | None
    subject: str | None
    snippet: str
    # The attachment whose text matched, when the email's own text did not.
    attachment_id: int | None = None


def combined_query(session: Session, words: str) -> str | None:
    """The tsquery text for ``words`` (websearch syntax), or None if nothing is left."""
    found = session.execute(
        _COMBINED_QUERY, {"words": words, "configs": list(SEARCH_CONFIGS)}
    ).scalar()
    return str(found) if found else None


def _conditions(f: SearchFilters) -> list[ColumnElement[bool]]:
    conditions = mail_conditions(
        sender=f.sender,
        recipient=f.recipient,
        since=f.since,
        until=f.until,
        has_attachments=f.has_attachments,
    )
    if f.mailbox_hash is not None:
        conditions.append(Email.mailbox_hash == f.mailbox_hash)
    if f.bulk is not None:
        conditions.append(Email.bulk.is_(f.bulk))
    if f.sender_trust is not None:
        conditions.append(Email.sender_trust == f.sender_trust)
    return conditions


def search(
    session: Session,
    words: str,
    filters: SearchFilters,
    *,
    visible: ColumnElement[bool] | None,
    cursor: tuple[datetime, int] | None,
    limit: int,
) -> tuple[list[Hit], tuple[datetime, int] | None]:
    """A page of hits, newest first, and the cursor of the next page (None: the last)."""
    tsquery = combined_query(session, words)
    if tsquery is None:
        return [], None
    query = sa.cast(sa.literal(tsquery), TSQUERY)
    conditions = _conditions(filters)
    if visible is not None:
        conditions.append(visible)
    if cursor is not None:
        conditions.append(tuple_(Email.received_at, Email.id) < tuple_(*cursor))
    newest = (Email.received_at.desc(), Email.id.desc())
    # Each source's page, then the page of their union (see sources.py).
    pages = [
        source(query).where(*conditions).order_by(*newest).limit(limit + 1).subquery()
        for source in SOURCES
    ]
    merged = union(*(select(page.c.id, page.c.received_at) for page in pages)).subquery()
    found = session.execute(
        select(merged.c.id, merged.c.received_at)
        .order_by(merged.c.received_at.desc(), merged.c.id.desc())
        .limit(limit + 1)
    ).all()
    page = found[:limit]
    hits = _hits(session, [row.id for row in page], query)
    next_cursor = (page[-1].received_at, page[-1].id) if len(found) > limit else None
    return hits, next_cursor


def _hits(session: Session, ids: list[int], query: ColumnElement[Any]) -> list[Hit]:
    if not ids:
        return []
    rows = session.execute(
        select(
            Email.id,
            Email.conversation_id,
            Email.received_at,
            Email.from_address,
            Email.from_name,
            Email.envelope_recipient,
            Email.subject,
        )
        .where(Email.id.in_(ids))
        .order_by(Email.received_at.desc(), Email.id.desc())
    ).all()
    own = snippets.email_snippets(session, ids, query)
    others = [email_id for email_id in ids if email_id not in own]
    found = snippets.attachment_snippets(session, others, query) if others else {}
    hits = []
    for row in rows:
        if row.id in own:
            hits.append(Hit(**row._asdict(), snippet=own[row.id]))
        else:
            attachment_id, snippet = found.get(row.id, (None, ""))
            hits.append(Hit(**row._asdict(), snippet=snippet, attachment_id=attachment_id))
    return hits
