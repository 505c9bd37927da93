"""``GET /api/v1/search``: emails whose words match, newest first, with snippets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.access.mailboxes import visible_emails
from api.access.policies import MailReader, read_mail
from api.deps import SessionDep
from api.openapi import API_ERRORS, error_responses
from api.pagination import DEFAULT_PAGE_SIZE, Cursor, CursorParam, PageSize, parse_cursor
from api.params import Instant, since_filter, text_filter, until_filter
from api.search import queries
from api.search.queries import SearchFilters, SenderTrust
from api.search.schemas import SearchHit, SearchPage

router = APIRouter(
    prefix="/search",
    tags=["search"],
    dependencies=[Depends(read_mail)],
    responses=error_responses(*API_ERRORS),
)


@router.get(
    "",
    summary="Search emails by their words",
    description=(
        "Full-text search over the subject, the reply text, the body and the text of the "
        "attachments once it is extracted (PostgreSQL text search; `q` takes web-search "
        'syntax: `"exact phrase"`, `or`, `-word`). Words are matched in the email\'s '
        "language (its Content-Language header; otherwise as written; attachment text as "
        "written). Newest first; filters combine with AND; `next_cursor` pages on. A hit "
        "found only in an attachment names it (`attachment_id`) and its snippet is of "
        "that text."
    ),
    response_model=SearchPage,
)
def search_emails(
    session: SessionDep,
    principal: MailReader,
    q: Annotated[str, text_filter("The words to find (web-search syntax).", 1000)],
    *,
    sender: Annotated[str | None, text_filter("The From address.")] = None,
    recipient: Annotated[str | None, text_filter("Envelope recipient, To or Cc address.")] = None,
    mailbox_hash: Annotated[str | None, text_filter("The plus-address tag.", 256)] = None,
    since: Annotated[Instant | None, since_filter("emails received")] = None,
    until: Annotated[Instant | None, until_filter("emails received")] = None,
    has_attachments: Annotated[
        bool | None, Query(description="Only emails with (true) or without (false) any.")
    ] = None,
    bulk: Annotated[
        bool | None, Query(description="Only list or bulk mail (true), or none of it (false).")
    ] = None,
    sender_trust: Annotated[
        SenderTrust | None,
        Query(
            description=(
                "Only emails whose visible From: is authenticated (pass), contradicted "
                "(fail), unsupported by any evidence (none) or unchecked for want of DNS "
                "(unknown)."
            )
        ),
    ] = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
    cursor: CursorParam = None,
) -> SearchPage:
    filters = SearchFilters(
        sender=sender,
        recipient=recipient,
        mailbox_hash=mailbox_hash,
        since=since,
        until=until,
        has_attachments=has_attachments,
        bulk=bulk,
        sender_trust=sender_trust,
    )
    after = parse_cursor(cursor, int)
    hits, next_position = queries.search(
        session,
        q,
        filters,
        visible=visible_emails(principal),
        cursor=(after.at, int(after.id)) if after is not None else None,
        limit=limit,
    )
    return SearchPage(
        items=[SearchHit.model_validate(hit, from_attributes=True) for hit in hits],
        next_cursor=Cursor(*next_position).encode() if next_position else None,
    )
