"""The hand-off outbox: one dispatch row per new email, in the email's own transaction.

Role: decide the route of a newly stored email (the first matching route of
``KAVE_HANDOFF_ROUTES_FILE``) and insert its ``dispatches`` row with the same session that
inserts the email, so both commit or neither does: a stored email is never left without
its hand-off, and a crash can never hand off an email that was not stored. The dispatcher
(``worker.dispatch``) publishes the rows afterwards.

Without a routes file the hand-off is off and nothing is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.handoff_routes import MatchInput, RouteTable, cached_routes
from shared.models import Dispatch, DispatchStatus
from shared.settings import get_settings

__all__ = ["configured_routes", "idempotency_key", "record_dispatch"]


def idempotency_key(email_dedup_key: str, route: str | None) -> str:
    """Stable per (email, route): the same email copy and route always give the same key."""
    return hashlib.sha256(f"{email_dedup_key}\x00{route or ''}".encode()).hexdigest()


def configured_routes() -> RouteTable | None:
    path: Path | None = get_settings().handoff_routes_file
    return cached_routes(str(path)) if path is not None else None


def match_input(values: Mapping[str, Any]) -> MatchInput:
    """What routes look at, from an email row's column values (worker.storage.email_values)."""
    return MatchInput(
        recipient=values.get("envelope_recipient"),
        sender=values.get("from_address"),
        subject=values.get("subject"),
        mailbox_hash=values.get("mailbox_hash"),
        auto_submitted=bool(values.get("auto_submitted")),
    )


def record_dispatch(
    session: Session, email_id: int, values: Mapping[str, Any], routes: RouteTable | None = None
) -> None:
    """Insert the dispatch of a newly stored email (in the caller's transaction)."""
    routes = routes if routes is not None else configured_routes()
    if routes is None:
        return
    route = routes.first_match(match_input(values))
    name = route.name if route is not None else None
    session.execute(
        insert(Dispatch)
        .values(
            email_id=email_id,
            route=name,
            idempotency_key=idempotency_key(str(values["dedup_key"]), name),
            status=DispatchStatus.PENDING if route is not None else DispatchStatus.UNROUTED,
        )
        .on_conflict_do_nothing(index_elements=[Dispatch.idempotency_key])
    )
