"""``/api/v1/events``: tracking (message) and sync events Mandrill posted."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.access.policies import read_operations
from api.deps import SessionDep
from api.events import queries
from api.events.queries import EventFilters
from api.events.schemas import EventOut, EventPage
from api.openapi import API_ERRORS, error_responses
from api.pagination import DEFAULT_PAGE_SIZE, CursorParam, PageSize, parse_cursor
from api.params import Instant, since_filter, text_filter, until_filter

router = APIRouter(
    prefix="/events",
    tags=["events"],
    dependencies=[Depends(read_operations)],
    responses=error_responses(*API_ERRORS),
)


@router.get(
    "",
    summary="List tracking and sync events",
    description=(
        "Message events (`send`, `open`, `click`, `hard_bounce`, …), sync events "
        "(`blacklist`, `whitelist`) and kinds Kave does not know yet, newest stored first, "
        "each with the payload as Mandrill sent it. `since`/`until` filter on when the "
        "event happened (Mandrill's `ts`)."
    ),
    response_model=EventPage,
)
def list_events(
    session: SessionDep,
    *,
    kind: Annotated[str | None, text_filter("Event kind, e.g. open or hard_bounce.", 64)] = None,
    recipient: Annotated[str | None, text_filter("The recipient address (any case).")] = None,
    since: Annotated[Instant | None, since_filter("events that happened")] = None,
    until: Annotated[Instant | None, until_filter("events that happened")] = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
    cursor: CursorParam = None,
) -> EventPage:
    filters = EventFilters(kind=kind, recipient=recipient, since=since, until=until)
    page = queries.list_events(session, filters, cursor=parse_cursor(cursor, int), limit=limit)
    return EventPage(
        items=[EventOut.model_validate(event) for event in page.rows],
        next_cursor=page.next_cursor,
    )
