"""The MCP server through the SDK's own client over real HTTP (a uvicorn API process):
the five tools with their schemas, each called, answers bounded and narrowed to the
key's mailboxes, and the gate refusing what the REST API refuses."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from shared.models import Attachment
from shared.objectstore import S3ObjectStore
from tests.api.agents import SUPPORT, Caller, make_key
from tests.api.conftest import T0, Rows, minutes

TOOLS = {"search_emails", "get_email", "get_thread", "get_attachment_text", "list_mailboxes"}


async def _session_calls(url: str, caller: Caller, calls: list[tuple[str, dict[str, Any]]]) -> Any:
    async with (
        httpx2.AsyncClient(headers=caller.headers, timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        listed = await session.list_tools()
        answers = []
        for name, arguments in calls:
            result = await session.call_tool(name, arguments)
            assert not result.is_error, result
            answers.append(result.structured_content or json.loads(result.content[0].text))
        return listed.tools, answers


def test_five_tools_over_http_for_a_scoped_key(
    agent_api: str, clean_db: Engine, rows: Rows, object_store: S3ObjectStore
) -> None:
    thread = "mcp-root@example.org"
    root = rows.email(
        conversation_id=thread,
        envelope_recipient="support+orders@example.com",
        subject="Order 1234",
        text_body="My parcel with the blue teapot never arrived.",
        reply_text="My parcel with the blue teapot never arrived.",
        received_at=T0,
        attachments=[("receipt.pdf", "application/pdf", b"%PDF-1.4 receipt")],
    )
    reply = rows.email(
        conversation_id=thread,
        envelope_recipient="support+orders@example.com",
        subject="Re: Order 1234",
        reply_text="We sent a new teapot today.",
        received_at=T0 + minutes(3),
    )
    other = rows.email(
        envelope_recipient="sales@example.com",
        text_body="Quote for a blue teapot fleet",
        received_at=T0 + minutes(5),
    )
    attachment_id = _first_attachment(rows, root.id)
    sha = _attachment_sha(rows, attachment_id)
    object_store.put(f"text/{sha}.md", b"# Receipt\n\nTotal: 42 EUR for one teapot\n")
    key = make_key(clean_db, "agent", mailboxes=(SUPPORT,))

    tools, answers = asyncio.run(
        _session_calls(
            agent_api + "/api/v1/mcp/",
            key,
            [
                ("list_mailboxes", {}),
                ("search_emails", {"query": "blue teapot"}),
                ("get_email", {"email_id": root.id, "max_chars": 100}),
                ("get_email", {"email_id": other.id}),
                ("get_thread", {"conversation_id": thread, "limit": 1}),
                ("get_attachment_text", {"attachment_id": attachment_id, "max_chars": 100}),
                ("search_emails", {"query": "teapot", "limit": 1}),
            ],
        )
    )
    assert {tool.name for tool in tools} == TOOLS
    for tool in tools:
        assert tool.input_schema["type"] == "object"
        assert tool.description
    search_tool = next(tool for tool in tools if tool.name == "search_emails")
    assert "query" in search_tool.input_schema["required"]

    mailboxes, found, email, hidden, first_page, text, limited = answers
    assert [m["mailbox"] for m in mailboxes["items"]] == ["support+orders@example.com"]
    assert [hit["id"] for hit in found["items"]] == [root.id]  # not the sales email
    assert "**blue**" in found["items"][0]["snippet"]
    assert email["subject"] == "Order 1234"
    assert email["attachments"][0]["filename"] == "receipt.pdf"
    assert hidden["status"] == "not_found"
    assert [e["id"] for e in first_page["emails"]] == [root.id]
    assert first_page["email_count"] == 2
    assert first_page["next_cursor"]
    assert text["status"] == "ok"
    assert "42 EUR" in text["text"]
    assert [hit["id"] for hit in limited["items"]] == [reply.id]
    assert limited["next_cursor"]


def test_the_gate_refuses_unknown_and_revoked_keys(agent_api: str, clean_db: Engine) -> None:
    revoked = make_key(clean_db, "gone", revoked=True)
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}},
    }  # fmt: skip
    headers = {"Accept": "application/json, text/event-stream"}
    url = agent_api + "/api/v1/mcp/"
    assert httpx.post(url, json=initialize, headers=headers).status_code == 401
    refused = httpx.post(url, json=initialize, headers={**headers, **revoked.headers})
    assert refused.status_code == 401
    assert "revoked" in refused.json()["message"]


def _first_attachment(rows: Rows, email_id: int) -> int:
    with Session(rows.engine) as session:
        return session.scalars(select(Attachment.id).where(Attachment.email_id == email_id)).one()


def _attachment_sha(rows: Rows, attachment_id: int) -> str:
    with Session(rows.engine) as session:
        attachment = session.get(Attachment, attachment_id)
        assert attachment is not None
        return attachment.sha256
