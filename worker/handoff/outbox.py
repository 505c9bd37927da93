"""The hand-off outbox: one dispatch row per new email, in the email's own transaction.

Role: decide the route of a newly stored email (the first matching route of
``KAVE_HANDOFF_ROUTES_FILE``) and insert its ``dispatches`` row with the same session that
inserts the email, so both commit or neither does: a stored email is never left without
its hand-off, and a crash can never hand off an email that was not stored. The dispatcher
(``worker.handoff.dispatch``) publishes the rows afterwards: the worker that stored the email,
right after the commit (a row it will hand off itself is inserted already claimed, see
``worker.handoff.inline``), or else a task and the sweep.

Without a routes file the hand-off is off and nothing is written. The routes come with the
worker's context (:class:`Outbox`, built once per process by ``worker.resources``), never
from the settings read here: the write path does not look anything up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Interval, bindparam, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.models import Dispatch, DispatchStatus
from worker.handoff import inline as handoff_inline
from worker.handoff.document import email_fields
from worker.handoff.routes import HttpHandler, MatchInput, RouteTable

__all__ = [
    "HANDOFF_OFF",
    "NewDispatch",
    "Outbox",
    "idempotency_key",
    "record_dispatch",
]


@dataclass(frozen=True, slots=True)
class NewDispatch:
    """A dispatch row inserted with a new email, for the worker that stored it to hand over
    after the commit: ``inline`` rows are already claimed (attempt 1, leased), the others
    are due and go to a task."""

    id: int
    email_id: int
    delivery_id: str
    route: str
    key: str
    inline: bool
    # An HTTP handler's body fields (worker.handoff.document.email_fields), for inline rows.
    fields: Mapping[str, Any] | None = None


def idempotency_key(email_dedup_key: str, route: str | None) -> str:
    """Stable per (email, route): the same email copy and route always give the same key."""
    return hashlib.sha256(f"{email_dedup_key}\x00{route or ''}".encode()).hexdigest()


def match_input(values: Mapping[str, Any]) -> MatchInput:
    """What routes look at, from an email row's column values (worker.ingest.rows.email_values)."""
    return MatchInput(
        recipient=values.get("envelope_recipient"),
        sender=values.get("from_address"),
        subject=values.get("subject"),
        mailbox_hash=values.get("mailbox_hash"),
        auto_submitted=bool(values.get("auto_submitted")),
        bulk=bool(values.get("bulk")),
        sender_trust=values.get("sender_trust"),
    )


# Built once: SQLAlchemy memoises a statement's cache key on the object, so a statement
# reused with new parameters skips both its construction and its key, on every call.
# On the connection, not the session: the ORM's bulk-insert path costs more than the SQL.
_INSERT_DISPATCH = (
    insert(Dispatch)
    .values(
        email_id=bindparam("email_id"),
        route=bindparam("route"),
        idempotency_key=bindparam("idempotency_key"),
        status=bindparam("status"),
        attempts=bindparam("attempts"),
        next_attempt_at=func.now() + bindparam("lease", type_=Interval),
    )
    .on_conflict_do_nothing(index_elements=[Dispatch.idempotency_key])
    .returning(Dispatch.id)
)


def record_dispatch(
    session: Session,
    email_id: int,
    delivery_id: str,
    values: Mapping[str, Any],
    *,
    routes: RouteTable,
    handed: list[NewDispatch] | None = None,
    fields: Callable[[], Mapping[str, Any]] | None = None,
    attachments: Iterable[Mapping[str, Any]] = (),
) -> None:
    """Insert the dispatch of a newly stored email (in the caller's transaction).

    With ``handed``, the caller hands the row over after its commit: it is appended there,
    and inserted already claimed when this process takes its route inline. ``fields``
    gives an HTTP handler's body fields from the values inserted (asked for only then).
    """
    route = routes.first_match(match_input(values))
    name = route.name if route is not None else None
    key = idempotency_key(str(values["dedup_key"]), name)
    # A route that waits for the attachments' text holds its row until they are final
    # (worker.handoff.held releases it); nothing to wait for, it goes at once.
    held = route is not None and route.after == "text" and waiting_for_text(attachments)
    inline = (
        handed is not None and name is not None and not held and handoff_inline.takes_inline(name)
    )
    status = DispatchStatus.PENDING if route is not None else DispatchStatus.UNROUTED
    dispatch_id = (
        session.connection()
        .execute(
            _INSERT_DISPATCH,
            {
                "email_id": email_id,
                "route": name,
                "idempotency_key": key,
                "status": DispatchStatus.HELD if held else status,
                # An inline row is claimed by its insert: attempt 1, leased (handoff.dispatch).
                "attempts": 1 if inline else 0,
                "lease": timedelta(seconds=handoff_inline.lease_seconds(routes) if inline else 0),
            },
        )
        .scalar()
    )
    if handed is not None and route is not None and dispatch_id is not None and not held:
        http = isinstance(route.handler, HttpHandler)
        body = fields() if inline and http and fields is not None else None
        handed.append(
            NewDispatch(dispatch_id, email_id, delivery_id, route.name, key, inline, body)
        )


def waiting_for_text(attachments: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any of an email's attachment rows still waits for its text."""
    return any(row.get("text_status") == "pending" for row in attachments)


@dataclass(frozen=True, slots=True)
class Outbox:
    """The seam between ingest's writer and the hand-off: the routes this worker hands off
    by (None: the hand-off is off, and no dispatch row is written)."""

    routes: RouteTable | None

    def record_new_email(
        self,
        session: Session,
        delivery_id: str,
        values: Mapping[str, Any],
        *,
        email_id: int,
        received_at: datetime,
        attachments: list[dict[str, Any]],
        handed: list[NewDispatch] | None,
    ) -> None:
        """The dispatch row of an email just inserted (its column ``values`` and
        ``attachments`` rows), in the same transaction, so a stored email is always handed
        off. An inline HTTP hand-off's body is built from those values, with no read back."""
        if self.routes is None:
            return

        def fields() -> dict[str, Any]:
            row = {**values, "id": email_id, "received_at": received_at}
            return email_fields(row, attachments)

        record_dispatch(
            session,
            email_id,
            delivery_id,
            values,
            routes=self.routes,
            handed=handed,
            fields=fields,
            attachments=attachments,
        )


HANDOFF_OFF = Outbox(routes=None)
