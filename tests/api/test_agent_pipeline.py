"""The agent surface over mail that went the whole way: a signed webhook through the
uvicorn receiver, a real Celery worker, then the uvicorn API read with a mailbox-scoped
agent key: the thread of a root, two replies and a forward in order with their reply
texts, a phrase found by search and by the MCP tool (the SDK's client over HTTP), and
the live feed resuming from before the batch."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sqlalchemy import Engine

from loadkit.feed_client import FeedReader
from loadkit.hostile_mail import inbound_event
from tests.api.agents import SUPPORT, make_key
from tests.api.test_mcp import _session_calls
from tests.webhooks import post_events, wait_for_deliveries

BOX = "support+billing@example.com"


def _message(ident: str, sender: str, subject: str, body: str, parents: list[str]) -> str:
    threading = (
        f"In-Reply-To: <{parents[-1]}>\r\nReferences: {' '.join(f'<{p}>' for p in parents)}\r\n"
        if parents
        else ""
    )
    return (
        f"Message-ID: <{ident}>\r\nFrom: {sender}\r\nTo: {BOX}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n{threading}"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body.replace("\n", "\r\n")
    )


ROOT = _message(
    "root-77@example.org",
    "Ana Lima <ana@example.org>",
    "Invoice 77 is wrong",
    "Hello,\n\nthe total on invoice 77 shows a tangerine surcharge I never ordered.\n\nAna\n",
    [],
)
REPLY_1 = _message(
    "r1-77@example.com",
    "Support <support+billing@example.com>",
    "Re: Invoice 77 is wrong",
    "We removed the surcharge and sent a corrected invoice.\n\n"
    "On Mon, 7 Dec 2026 at 10:00, Ana Lima <ana@example.org> wrote:\n"
    "> the total on invoice 77 shows a tangerine surcharge I never ordered.\n",
    ["root-77@example.org"],
)
REPLY_2 = _message(
    "r2-77@example.org",
    "Ana Lima <ana@example.org>",
    "Re: Invoice 77 is wrong",
    "Thanks, the new one is right.\n\n"
    "On Mon, 7 Dec 2026 at 11:00, Support wrote:\n> We removed the surcharge.\n",
    ["root-77@example.org", "r1-77@example.com"],
)
FORWARD = _message(
    "fwd-77@example.com",
    "Support <support+billing@example.com>",
    "Fwd: Invoice 77 is wrong",
    "Billing team: please check how this happened.\n\n"
    "---------- Forwarded message ---------\nFrom: Ana Lima <ana@example.org>\n"
    "Subject: Re: Invoice 77 is wrong\n\nThanks, the new one is right.\n",
    ["root-77@example.org", "r1-77@example.com", "r2-77@example.org"],
)


@pytest.mark.usefixtures("worker")
def test_thread_search_mcp_and_feed_over_mail_from_the_webhook(
    receiver: str, agent_api: str, engine: Engine, clean_db: Engine
) -> None:
    key = make_key(clean_db, "agent", mailboxes=(SUPPORT,))
    feed = FeedReader(agent_api, key.headers)
    feed.read(0, timeout=10)  # where the feed stands before the batch

    events = [inbound_event(raw, BOX) for raw in (ROOT, REPLY_1, REPLY_2, FORWARD)]
    events.append(inbound_event(ROOT.replace("root-77", "other-1"), "sales@example.com"))
    response = post_events(receiver, json.dumps(events))
    assert response.status_code == 200
    wait_for_deliveries(engine, [response.json()["delivery_id"]])

    with httpx.Client(base_url=agent_api, headers=key.headers, timeout=10) as client:
        threads = client.get("/api/v1/conversations", params={"mailbox": BOX}).json()
        assert len(threads["items"]) == 1
        thread = client.get(f"/api/v1/conversations/{threads['items'][0]['id']}").json()
        subjects = [email["subject"] for email in thread["emails"]]
        assert subjects == [
            "Invoice 77 is wrong",
            "Re: Invoice 77 is wrong",
            "Re: Invoice 77 is wrong",
            "Fwd: Invoice 77 is wrong",
        ]
        replies = [email["reply_text"] or "" for email in thread["emails"]]
        assert "tangerine surcharge" in replies[0]
        assert replies[1].startswith("We removed the surcharge")
        assert "tangerine" not in replies[1]  # the quote is cut
        assert replies[2].startswith("Thanks, the new one is right")
        assert replies[3].startswith("Billing team")
        found = client.get("/api/v1/search", params={"q": '"tangerine surcharge"'}).json()
        assert {hit["id"] for hit in found["items"]} >= {thread["emails"][0]["id"]}
        assert all(hit["envelope_recipient"] == BOX for hit in found["items"])

    _, (mcp_found,) = asyncio.run(
        _session_calls(agent_api + "/api/v1/mcp/", key, [("search_emails", {"query": "tangerine"})])
    )
    assert thread["emails"][0]["id"] in [hit["id"] for hit in mcp_found["items"]]
    assert all(hit["envelope_recipient"] == BOX for hit in mcp_found["items"])

    feed.read(4, timeout=20)
    assert feed.received == [email["id"] for email in thread["emails"]]
