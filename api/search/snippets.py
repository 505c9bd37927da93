"""The snippets of a page's hits: ``ts_headline`` over a bounded start of the text that
matched, the words marked ``**like this**``.

``ts_headline`` parses all the text it is given, so its cost grows with the text: it is
first given ``FIRST_CHARS`` characters, and only a hit whose words are not in them is
given ``SNIPPET_CHARS`` (a second statement, for those rows alone). Words later still
get a snippet of the start, unmarked. An email whose own text matched gets a snippet of
it; one that matched only in an attachment's text, a snippet of that text (its first
attachment that matches).
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from api.search.sources import attachment_hits
from shared.models import Attachment, AttachmentText, Email

FIRST_CHARS: Final = 3000
SNIPPET_CHARS: Final = 20000
MARK: Final = "**"
_OPTIONS = f"MaxFragments=2, MaxWords=30, MinWords=10, StartSel={MARK}, StopSel={MARK}"
_SIMPLE: ColumnElement[Any] = sa.literal_column("'simple'::regconfig")


def _headline(config: Any, text: Any, query: ColumnElement[Any], chars: int) -> Any:
    return func.ts_headline(config, func.left(text, chars), query, _OPTIONS)


def _email_text() -> ColumnElement[str]:
    body = func.coalesce(
        Email.text_body,
        func.regexp_replace(func.coalesce(Email.html_body, ""), "<[^>]*>", " ", "g"),
    )
    return func.concat_ws("\n", Email.subject, body)


def email_snippets(session: Session, ids: list[int], query: ColumnElement[Any]) -> dict[int, str]:
    """The snippet of each email among ``ids`` whose own text matches."""

    def snippets(among: list[int], chars: int) -> dict[int, str]:
        headline = _headline(func.kave_search_config(Email.headers), _email_text(), query, chars)
        matched = Email.search_document.bool_op("@@")(query)
        rows = session.execute(select(Email.id, headline).where(Email.id.in_(among), matched))
        return {row[0]: row[1] for row in rows}

    found = snippets(ids, FIRST_CHARS)
    later = [email_id for email_id, snippet in found.items() if MARK not in snippet]
    if later:
        found.update(snippets(later, SNIPPET_CHARS))
    return found


def attachment_snippets(
    session: Session, email_ids: list[int], query: ColumnElement[Any]
) -> dict[int, tuple[int, str]]:
    """Per email, its first attachment whose text matches, and a snippet of that text."""
    matching = attachment_hits(query).where(Attachment.email_id.in_(email_ids)).subquery()
    firsts = session.execute(
        select(matching.c.email_id, matching.c.id, matching.c.sha256)
        .ext(distinct_on(matching.c.email_id))
        .order_by(matching.c.email_id, matching.c.id)
    ).all()

    def snippets(shas: set[str], chars: int) -> dict[str, str]:
        headline = _headline(_SIMPLE, AttachmentText.text, query, chars)
        rows = session.execute(
            select(AttachmentText.sha256, headline).where(AttachmentText.sha256.in_(shas))
        )
        return {row[0]: row[1] for row in rows}

    texts = snippets({row.sha256 for row in firsts}, FIRST_CHARS) if firsts else {}
    later = {sha for sha, snippet in texts.items() if MARK not in snippet}
    if later:
        texts.update(snippets(later, SNIPPET_CHARS))
    return {row.email_id: (row.id, texts.get(row.sha256, "")) for row in firsts}
