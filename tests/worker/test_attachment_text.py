"""Attachment text through the real receiver, a real Celery worker (serving the mail and
the text queues) and the S3 server: converted off the ingest path, bounded, unwrapped
from TNEF, erased with its attachment."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session, sessionmaker

from loadkit import documents
from shared.contract import text_object_key
from shared.lifecycle.erase import erase
from shared.models import Attachment, AttachmentText, Email
from shared.objectstore import S3ObjectStore
from shared.settings import Settings
from tests import services
from tests.webhooks import fixture_events, post_events, wait_for_deliveries
from worker.text import service
from worker.text.tasks import limits

pytestmark = pytest.mark.usefixtures("text_worker", "clean_db")

DOCUMENTS = Path(__file__).resolve().parents[1] / "fixtures" / "documents"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture(scope="module")
def text_settings(database_url: str, redis_url: str, s3_endpoint: str) -> Settings:
    """A pipeline of this module's own, text on (the session's has it off)."""
    return services.pipeline_settings(
        database_url,
        redis_url,
        s3_endpoint,
        queue_name=f"kave-text-test-{uuid.uuid4().hex[:8]}",
        text_enabled=True,
    )


@pytest.fixture(scope="module")
def text_worker(text_settings: Settings, service_dir: Path) -> Iterator[None]:
    with services.worker_process(text_settings, service_dir / "text-worker.log"):
        yield


@pytest.fixture(scope="module")
def receiver(text_settings: Settings, service_dir: Path) -> Iterator[str]:
    with services.receiver_process(text_settings, service_dir / "text-receiver.log") as base:
        yield base


def mail(message_id: str, files: list[tuple[str, str, bytes]]) -> str:
    msg = EmailMessage()
    msg["From"] = "Ana <ana@example.org>"
    msg["To"] = "docs@example.com"
    msg["Subject"] = "Documents"
    msg["Message-ID"] = message_id
    msg.set_content("See attached.\n")
    for name, content_type, data in files:
        main, sub = content_type.split("/", 1)
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return json.dumps(
        [
            {
                "event": "inbound",
                "ts": 1764583200,
                "msg": {"raw_msg": msg.as_string(), "email": "docs@example.com"},
            }
        ]
    )


def send(receiver: str, engine: Engine, events: str) -> None:
    response = post_events(receiver, events)
    assert response.status_code == 200, response.text
    wait_for_deliveries(engine, [response.json()["delivery_id"]])


def final_attachments(engine: Engine, timeout: float = 30.0) -> dict[str, Attachment]:
    """Every attachment by filename, once none is pending."""
    deadline = time.monotonic() + timeout
    while True:
        with Session(engine) as session:
            rows = list(session.scalars(select(Attachment)))
        if rows and all(row.text_status != "pending" for row in rows):
            return {row.filename: row for row in rows}
        assert time.monotonic() < deadline, {r.filename: r.text_status for r in rows}
        time.sleep(0.2)


def test_the_readme_fixture_pdf_gets_its_text(
    receiver: str, engine: Engine, object_store: S3ObjectStore
) -> None:
    send(receiver, engine, fixture_events("inbound_with_multiple_attachments.json"))
    rows = final_attachments(engine)
    pdf = rows["sample.pdf"]
    assert pdf.text_status == "ready"
    assert pdf.text_extractor is not None
    assert pdf.text_extractor.startswith("kreuzberg ")
    text = object_store.get(text_object_key(pdf.sha256)).decode("utf-8")
    assert "Founder Collaboration Agreement" in text
    assert pdf.text_characters == len(text)
    assert pdf.text_excerpt is not None
    assert text.startswith(pdf.text_excerpt)


def test_tables_hostile_documents_and_tnef(
    receiver: str, engine: Engine, object_store: S3ObjectStore
) -> None:
    carried = documents.pdf([documents.text_page("Quarterly invoice 4711")])
    files = [
        ("table.docx", DOCX, (DOCUMENTS / "tbl-cell-props.docx").read_bytes()),
        ("founders.xlsx", XLSX, (DOCUMENTS / "founders.xlsx").read_bytes()),
        ("bomb.docx", DOCX, documents.zip_bomb_docx()),
        ("bomb.pdf", "application/pdf", documents.pdf_bomb()),
        ("pages.pdf", "application/pdf", documents.many_pages_pdf(5000)),
        ("corrupt.docx", DOCX, b"PK\x03\x04" + b"\x00" * 600),
        ("winmail.dat", "application/ms-tnef", documents.tnef([("invoice.pdf", carried)])),
    ]
    started = time.monotonic()
    send(receiver, engine, mail("<docs-1@example.org>", files))
    # The next email is stored while the conversions run.
    send(receiver, engine, mail("<next-1@example.org>", []))
    rows = final_attachments(engine, timeout=60.0)
    elapsed = time.monotonic() - started

    statuses = {name: row.text_status for name, row in rows.items()}
    assert statuses["table.docx"] == statuses["founders.xlsx"] == "ready", statuses
    docx = object_store.get(text_object_key(rows["table.docx"].sha256)).decode()
    assert "| a | b | c | d |" in docx
    assert "| --- |" in docx
    xlsx = object_store.get(text_object_key(rows["founders.xlsx"].sha256)).decode()
    assert "| first_name | last_name | gpa |" in xlsx
    assert rows["bomb.docx"].text_status == "skipped:expansion"
    assert rows["bomb.pdf"].text_status == "skipped:expansion"
    assert rows["pages.pdf"].text_status in ("skipped:pages", "skipped:time")
    assert rows["corrupt.docx"].text_status == "failed"
    # TNEF: the wrapper is kept, and the PDF inside is an attachment with its own text.
    assert rows["winmail.dat"].text_status == "skipped:container"
    invoice = rows["invoice.pdf"]
    assert invoice.content_type == "application/pdf"
    assert "Quarterly invoice 4711" in object_store.get(text_object_key(invoice.sha256)).decode()
    # Seven conversions on the test worker's two processes, each bounded to seconds.
    assert elapsed < 60
    with Session(engine) as session:
        assert session.scalar(select(Email.id).where(Email.message_id == "<next-1@example.org>"))


def test_erasure_removes_the_text_with_its_attachment(
    receiver: str, engine: Engine, object_store: S3ObjectStore
) -> None:
    data = documents.pdf([documents.text_page("Erase me please")])
    send(receiver, engine, mail("<erase-1@example.org>", [("erase.pdf", "application/pdf", data)]))
    row = final_attachments(engine)["erase.pdf"]
    key = text_object_key(row.sha256)
    assert object_store.exists(key)
    with Session(engine) as session:
        email_id = session.scalar(select(Email.id))
        assert "Erase me please" in session.scalars(select(AttachmentText.text)).one()
    erase(sessionmaker(engine), object_store, actor="test", grace_seconds=0, email_id=email_id)
    assert not object_store.exists(key)
    assert not object_store.exists(row.object_key)
    with Session(engine) as session:
        assert session.scalars(select(AttachmentText)).all() == []


def test_the_sweep_indexes_a_ready_text_without_its_search_row(
    receiver: str, engine: Engine, object_store: S3ObjectStore, text_settings: Settings
) -> None:
    """A text made ready before search existed (its row missing) is indexed by the sweep
    from its object, once."""
    data = documents.pdf([documents.text_page("Indexed later by the sweep")])
    send(receiver, engine, mail("<sweep-1@example.org>", [("late.pdf", "application/pdf", data)]))
    row = final_attachments(engine)["late.pdf"]
    with Session(engine) as session, session.begin():
        session.execute(delete(AttachmentText))
    context = service.TextContext(
        session_factory=sessionmaker(engine),
        object_store=object_store,
        limits=limits(text_settings),
        schedule_dispatch=lambda _dispatch_id: None,
    )
    assert service.index_unindexed(context) == 1
    with Session(engine) as session:
        indexed = session.get(AttachmentText, row.sha256)
        assert indexed is not None
        assert "Indexed later by the sweep" in indexed.text
    assert service.index_unindexed(context) == 0  # nothing left to do
