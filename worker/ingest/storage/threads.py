"""Threads that join: a reply takes the conversation id of a stored email it replies to.

The stateless rule (``worker.ingest.derive.threads.conversation_id``) gives a reply that
carries only In-Reply-To a thread of its own, named after its parent rather than the
parent's root. So before an email's rows are written, one statement looks its parents up
(``EmailRows.parent_ids``: In-Reply-To, then References from the nearest back to the
root, all at once, by the indexed ``emails.message_id``) and the email takes the
conversation id of the nearest one stored; with none stored, the stateless id stays.

A statement of its own, run only for emails that name a parent, rather than a part of the
email's one statement (``worker.ingest.storage.emails.store_email``): that statement is
at the length up to which psycopg keeps a statement parsed (tests/worker/test_email_rows.py),
and this one costs a round trip only for replies. Ingest and ``kave reprocess`` call the
same function, so reprocessing gives what ingest would give against what is stored.

What is guaranteed: the lookup runs in the email's transaction, so under READ COMMITTED
it sees every email committed before it began. A delivery's events commit one after
another in batch order, so a parent earlier in the same batch is seen; one later in the
batch, or one committing at the same moment on another worker, is not, and the reply
keeps the stateless id (its References root, which the parent has too whenever the list
is whole). Nothing rewrites a stored reply when its parent arrives after it: ``kave
reprocess`` looks again at what is stored by then, and joins it.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import ARRAY, Text, any_, bindparam, func, select
from sqlalchemy.orm import Session

from shared.models import Email
from worker.ingest.rows import EmailRows

_PARENT_IDS = bindparam("parent_ids", type_=ARRAY(Text))
# Built once (SQLAlchemy memoises a statement's cache key on the object).
_STORED_CONVERSATION = (
    select(Email.conversation_id)
    .where(
        Email.message_id == any_(_PARENT_IDS),
        Email.conversation_id.is_not(None),
        # The email itself never counts: reprocessing a stored email must give what its
        # insert gave, when its own row was not there yet.
        Email.dedup_key != bindparam("dedup_key"),
    )
    # Nearest parent first. Copies of one email (to several recipients) share a
    # Message-ID: the first stored decides, so the answer does not depend on the plan.
    .order_by(func.array_position(_PARENT_IDS, Email.message_id), Email.id)
    .limit(1)
)


def with_stored_conversation(session: Session, rows: EmailRows) -> EmailRows:
    """``rows`` with the conversation id of the nearest stored parent (unchanged when the
    email names none, or none of them is stored)."""
    if not rows.parent_ids:
        return rows
    values = rows.values
    stored = (
        session.connection()
        .execute(
            _STORED_CONVERSATION,
            {"parent_ids": list(rows.parent_ids), "dedup_key": values["dedup_key"]},
        )
        .scalar()
    )
    if stored is None or stored == values["conversation_id"]:
        return rows
    return replace(rows, values={**values, "conversation_id": stored})
