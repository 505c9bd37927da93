"""The MCP tools. Each reads through the caller's mailboxes, answers a bounded amount (a
page of at most ``MAX_*`` items, texts cut to ``max_chars``) and says how to get more (a
cursor or an offset). Database reads run in a worker thread: the SDK serves tools on
the event loop."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from pydantic import AwareDatetime, Field
from sqlalchemy.orm import Session

from api.access.mailboxes import visible_emails
from api.access.principal import Principal
from api.conversations import queries as threads
from api.emails import queries as emails
from api.mcp import reads
from api.mcp.gate import caller_of
from api.pagination import Cursor, InvalidCursorError
from api.search import queries as search
from api.search.queries import SearchFilters, SenderTrust

MAX_SEARCH_HITS = 25
MAX_THREAD_EMAILS = 50
MAX_MAILBOXES = 100
MAX_CHARS = 50_000

Limit = Annotated[int, Field(ge=1, description="How many items at most.")]
CursorArg = Annotated[
    str | None, Field(max_length=2000, description="next_cursor of the previous answer.")
]
MaxChars = Annotated[
    int, Field(ge=100, le=MAX_CHARS, description="Texts are cut to this many characters.")
]


async def _read(ctx: Context, work: Any) -> Any:
    principal, state = caller_of(ctx.request_context.request)

    def run() -> Any:
        with state.session_factory() as session:
            return work(session, principal, state)

    return await anyio.to_thread.run_sync(run)


def _keyset(value: str | None) -> tuple[datetime, int] | None:
    if not value:
        return None
    try:
        cursor = Cursor.decode(value, int)
    except InvalidCursorError:
        raise ValueError("cursor: pass next_cursor unchanged") from None
    return cursor.at, int(cursor.id)


def register(server: MCPServer) -> None:
    @server.tool(
        description=(
            "Full-text search of stored emails (subject, reply text, body; web-search "
            'syntax: "exact phrase", or, -word), newest first, with snippets.'
        )
    )
    async def search_emails(  # noqa: PLR0917 - the SDK makes the tool's schema from these
        ctx: Context,
        query: Annotated[str, Field(min_length=1, max_length=1000)],
        sender: str | None = None,
        recipient: str | None = None,
        mailbox_hash: str | None = None,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        has_attachments: bool | None = None,
        bulk: bool | None = None,
        sender_trust: SenderTrust | None = None,
        limit: Limit = 10,
        cursor: CursorArg = None,
    ) -> dict[str, Any]:
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
        after = _keyset(cursor)

        def work(session: Session, principal: Principal, _state: Any) -> dict[str, Any]:
            hits, position = search.search(
                session,
                query,
                filters,
                visible=visible_emails(principal),
                cursor=after,
                limit=min(limit, MAX_SEARCH_HITS),
            )
            return {
                "items": [
                    {**asdict(hit), "received_at": hit.received_at.isoformat()} for hit in hits
                ],
                "next_cursor": Cursor(*position).encode() if position else None,
            }

        result: dict[str, Any] = await _read(ctx, work)
        return result

    @server.tool(description="One email: addresses, subject, reply text, body, attachments.")
    async def get_email(
        ctx: Context, email_id: Annotated[int, Field(ge=1)], max_chars: MaxChars = 20_000
    ) -> dict[str, Any]:
        def work(session: Session, principal: Principal, _state: Any) -> dict[str, Any]:
            email = emails.get_email(session, email_id, visible=visible_emails(principal))
            if email is None:
                return {"status": "not_found", "message": f"no email {email_id}"}
            return reads.email_for_agent(email, max_chars=max_chars)

        result: dict[str, Any] = await _read(ctx, work)
        return result

    @server.tool(
        description=(
            "A conversation's emails in arrival order (reply texts, senders, attachments), "
            "its participants and last activity."
        )
    )
    async def get_thread(
        ctx: Context,
        conversation_id: Annotated[str, Field(min_length=1, max_length=threads.MAX_ID_CHARS)],
        limit: Limit = 10,
        cursor: CursorArg = None,
        max_chars: MaxChars = 4000,
    ) -> dict[str, Any]:
        after = threads.decode_cursor(cursor, int) if cursor else None

        def work(session: Session, principal: Principal, _state: Any) -> dict[str, Any]:
            visible = visible_emails(principal)
            count, last = threads.thread_totals(session, conversation_id, visible)
            if count == 0 or last is None:
                return {"status": "not_found", "message": f"no conversation {conversation_id}"}
            page, next_cursor = threads.thread_emails(
                session,
                conversation_id,
                visible=visible,
                cursor=after,
                limit=min(limit, MAX_THREAD_EMAILS),
            )
            shown = [reads.email_for_agent(e, max_chars=max_chars) for e in page]
            for email in shown:
                email.pop("text_body")  # the thread view carries what each email adds
            return {
                "conversation_id": conversation_id,
                "email_count": count,
                "last_activity_at": last.isoformat(),
                "participants": threads.participants(session, conversation_id, visible),
                "emails": shown,
                "next_cursor": next_cursor,
            }

        result: dict[str, Any] = await _read(ctx, work)
        return result

    @server.tool(
        description=(
            "The text extracted from an attachment (Markdown), from `offset`, at most "
            "`max_chars`; status not_available until text extraction has run for it."
        )
    )
    async def get_attachment_text(
        ctx: Context,
        attachment_id: Annotated[int, Field(ge=1)],
        offset: Annotated[int, Field(ge=0)] = 0,
        max_chars: MaxChars = 20_000,
    ) -> dict[str, Any]:
        def work(session: Session, principal: Principal, state: Any) -> dict[str, Any]:
            return reads.attachment_text(
                session,
                state.object_store,
                principal,
                attachment_id,
                offset=offset,
                max_chars=max_chars,
            )

        result: dict[str, Any] = await _read(ctx, work)
        return result

    @server.tool(description="The mailboxes (envelope recipients) you may read, with counts.")
    async def list_mailboxes(
        ctx: Context, limit: Limit = 50, cursor: CursorArg = None
    ) -> dict[str, Any]:
        def work(session: Session, principal: Principal, _state: Any) -> dict[str, Any]:
            items, next_cursor = reads.list_mailboxes(
                session,
                visible_emails(principal),
                after=cursor,
                limit=min(limit, MAX_MAILBOXES),
            )
            return {"items": items, "next_cursor": next_cursor}

        result: dict[str, Any] = await _read(ctx, work)
        return result
