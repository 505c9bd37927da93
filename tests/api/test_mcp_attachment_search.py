"""Issue 34's acceptance for search over attachment text, end to end: an email with a PDF
stored through the real receiver and an ingest worker, searched with the MCP SDK's own
client over HTTP (a real uvicorn API). Until a text worker has extracted the PDF's
text, a phrase of the body is found and a phrase only the PDF holds is not; once the
text is ready, that phrase finds the email, naming the attachment, with a snippet of
its text; erasing the email removes the searchable text."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from kave.devstack import child_env, running, start_celery_worker
from loadkit import documents
from shared.lifecycle.erase import erase
from shared.models import Attachment, AttachmentText
from shared.objectstore import S3ObjectStore
from shared.settings import Settings
from tests import services
from tests.api.agents import Caller, make_key
from tests.webhooks import post_events, wait_for_deliveries

BODY_PHRASE = "the crate of copper kettles"
PDF_PHRASE = "marmalade surcharge of 314 florins"


@pytest.fixture(scope="module")
def text_settings(database_url: str, redis_url: str, s3_endpoint: str) -> Settings:
    """A pipeline of this module's own with attachment text on: ingest queues each
    conversion on ``text_queue_name``, which only the text worker serves."""
    return services.pipeline_settings(
        database_url,
        redis_url,
        s3_endpoint,
        queue_name=f"kave-search-test-{uuid.uuid4().hex[:8]}",
        text_enabled=True,
    )


@pytest.fixture(scope="module")
def ingest_worker(text_settings: Settings, service_dir: Path) -> Iterator[None]:
    """A worker serving the mail queue only, as production's ingest workers do."""
    process = start_celery_worker(
        "worker.main",
        text_settings.queue_name,
        child_env(text_settings),
        service_dir / "search-ingest-worker.log",
        concurrency=1,
        node=f"ingest-{uuid.uuid4().hex[:8]}",
        cwd=services.REPO,
    )
    with running(process):
        yield


@pytest.fixture(scope="module")
def receiver(text_settings: Settings, service_dir: Path) -> Iterator[str]:
    with services.receiver_process(text_settings, service_dir / "search-receiver.log") as base:
        yield base


def _mail(pdf: bytes) -> str:
    msg = EmailMessage()
    msg["From"] = "Ana <ana@example.org>"
    msg["To"] = "billing@example.com"
    msg["Subject"] = "Your statement"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    msg.set_content(f"Hello, please find attached the statement for {BODY_PHRASE}.\n")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="statement.pdf")
    event = {
        "event": "inbound",
        "ts": 1764583200,
        "msg": {"raw_msg": msg.as_string(), "email": "billing@example.com"},
    }
    return json.dumps([event])


async def _search(url: str, caller: Caller, queries: list[str]) -> list[dict[str, Any]]:
    async with (
        httpx2.AsyncClient(headers=caller.headers, timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        answers = []
        for query in queries:
            result = await session.call_tool("search_emails", {"query": query})
            assert not result.is_error, result
            answers.append(result.structured_content or json.loads(result.content[0].text))
        return answers


def _ready(engine: Engine, timeout: float = 60.0) -> Attachment:
    deadline = time.monotonic() + timeout
    while True:
        with Session(engine) as session:
            pdf = session.scalars(select(Attachment)).one()
        if pdf.text_status != "pending":
            return pdf
        assert time.monotonic() < deadline, "the text worker did not convert the PDF"
        time.sleep(0.2)


@pytest.mark.usefixtures("ingest_worker")
def test_a_phrase_only_in_the_pdf_is_found_once_its_text_exists(  # noqa: PLR0917
    receiver: str,
    agent_api: str,
    clean_db: Engine,
    text_settings: Settings,
    service_dir: Path,
    object_store: S3ObjectStore,
) -> None:
    pdf = documents.pdf([documents.text_page(f"Statement: a {PDF_PHRASE} applies.")])
    response = post_events(receiver, _mail(pdf))
    assert response.status_code == 200, response.text
    wait_for_deliveries(clean_db, [response.json()["delivery_id"]])
    key = make_key(clean_db, "searcher", mailboxes=("billing@example.com",))
    mcp_url = agent_api + "/api/v1/mcp/"

    # No text worker yet: the PDF's text does not exist.
    with Session(clean_db) as session:
        pending = session.scalars(select(Attachment)).one()
    assert pending.text_status == "pending"
    body, in_pdf = asyncio.run(_search(mcp_url, key, [f'"{BODY_PHRASE}"', f'"{PDF_PHRASE}"']))
    assert len(body["items"]) == 1
    assert "**copper**" in body["items"][0]["snippet"]
    assert body["items"][0]["attachment_id"] is None
    assert in_pdf["items"] == []

    text_worker = start_celery_worker(
        "worker.main",
        text_settings.text_queue_name,
        child_env(text_settings),
        service_dir / "search-text-worker.log",
        concurrency=1,
        node=f"text-{uuid.uuid4().hex[:8]}",
        cwd=services.REPO,
    )
    with running(text_worker):
        ready = _ready(clean_db)
    assert ready.text_status == "ready"

    (found,) = asyncio.run(_search(mcp_url, key, [f'"{PDF_PHRASE}"']))
    assert [hit["id"] for hit in found["items"]] == [ready.email_id]
    assert found["items"][0]["attachment_id"] == ready.id
    assert "**marmalade**" in found["items"][0]["snippet"]
    (other,) = asyncio.run(_search(mcp_url, make_key(clean_db, "other"), ['"314 florins"']))
    assert [hit["id"] for hit in other["items"]] == [ready.email_id]  # an unscoped key too

    # Erasure takes the searchable text with the email.
    session_factory = sessionmaker(clean_db)
    erase(session_factory, object_store, actor="test", grace_seconds=0, email_id=ready.email_id)
    with Session(clean_db) as session:
        assert session.scalar(select(func.count()).select_from(AttachmentText)) == 0
    (gone,) = asyncio.run(_search(mcp_url, make_key(clean_db, "after"), ['"314 florins"']))
    assert gone["items"] == []
