"""What a search looks in: each source gives the condition on ``emails`` rows whose text
in that source matches the query.

Today there is one: the email's own text (subject, reply text, body), matched through the
GIN expression index ``ix_emails_search`` (migration 0013), so the expression here must
stay exactly the index's. Attachment text (issue 32) becomes a second source: a condition
such as ``EXISTS (SELECT 1 FROM <attachment text table> t WHERE t.email_id = emails.id
AND <its tsvector> @@ :query)`` backed by its own GIN index, appended to ``SOURCES``.
:func:`matches` ORs the sources.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, func
from sqlalchemy.dialects.postgresql import TSVECTOR

from shared.models import Email

Source = Callable[[ColumnElement[Any]], ColumnElement[bool]]


def email_document() -> ColumnElement[Any]:
    """The email's tsvector, written as the index ``ix_emails_search`` is."""
    return func.kave_search_document(
        Email.headers, Email.subject, Email.reply_text, Email.text_body, Email.html_body,
        type_=TSVECTOR,
    )  # fmt: skip


def email_text(query: ColumnElement[Any]) -> ColumnElement[bool]:
    return email_document().bool_op("@@")(query)


SOURCES: list[Source] = [email_text]


def matches(query: ColumnElement[Any]) -> ColumnElement[bool]:
    return sa.or_(*(source(query) for source in SOURCES))
