"""What a search looks in: each source gives the condition on ``emails`` rows whose text in
that source matches the query.

Today there is one: the email's own text (subject, reply text, body), its tsvector kept
in ``emails.search_document`` and matched through the GIN index ``ix_emails_search``.
Attachment text (issue 32) becomes a second source: a condition such as ``EXISTS (SELECT
1 FROM <attachment text table> t WHERE t.email_id = emails.id AND <its tsvector> @@
:query)`` backed by its own GIN index, appended to ``SOURCES``. :func:`matches` ORs the
sources.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement

from shared.models import Email

Source = Callable[[ColumnElement[Any]], ColumnElement[bool]]


def email_text(query: ColumnElement[Any]) -> ColumnElement[bool]:
    """The email's own text: ``emails.search_document``, kept by a trigger (migration
    0013) and indexed by ``ix_emails_search``."""
    return Email.search_document.bool_op("@@")(query)


SOURCES: list[Source] = [email_text]


def matches(query: ColumnElement[Any]) -> ColumnElement[bool]:
    return sa.or_(*(source(query) for source in SOURCES))
