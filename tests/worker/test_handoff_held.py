"""``after: text``: a held dispatch is released once, when its email's last attachment
text status is final (worker.handoff.held), on the real database."""

from __future__ import annotations

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from shared.models import Attachment, Dispatch, DispatchStatus
from tests.rows import add_stored_email
from worker.handoff.document import text_url
from worker.handoff.held import release_held
from worker.handoff.outbox import waiting_for_text


def _held_email(session: Session, statuses: list[str]) -> int:
    email = add_stored_email(session)
    for position, status in enumerate(statuses):
        session.add(
            Attachment(
                email_id=email.id,
                position=position,
                filename=f"f{position}.pdf",
                content_type="application/pdf",
                size=1,
                sha256=f"{position:064d}",
                object_key=f"attachments/{position}",
                text_status=status,
            )
        )
    session.add(
        Dispatch(
            email_id=email.id,
            route="agents",
            idempotency_key=f"{email.id:064d}",
            status=DispatchStatus.HELD,
        )
    )
    session.flush()
    return email.id


def test_a_held_dispatch_is_released_once_when_no_attachment_waits(clean_db: Engine) -> None:
    with Session(clean_db) as session, session.begin():
        email_id = _held_email(session, ["ready", "pending"])
    with Session(clean_db) as session, session.begin():
        assert release_held(session, [email_id]) == []
        session.execute(update(Attachment).values(text_status="skipped:time"))
        released = release_held(session, [email_id])
        assert len(released) == 1
    with Session(clean_db) as session, session.begin():
        assert release_held(session) == []
        status = session.scalar(select(Dispatch.status).where(Dispatch.id == released[0]))
        assert status == DispatchStatus.PENDING


def test_an_email_waits_only_for_pending_attachments() -> None:
    assert waiting_for_text([{"text_status": "ready"}, {"text_status": "pending"}])
    assert not waiting_for_text([{"text_status": "skipped:type"}, {"text_status": "failed"}])
    assert not waiting_for_text([])


def test_the_document_says_where_a_ready_text_is_and_only_then() -> None:
    assert text_url({"id": 5, "text_status": "ready", "scan_status": None}) == (
        "/api/v1/attachments/5/text"
    )
    assert text_url({"id": 5, "text_status": "ready", "scan_status": "clean"}) is not None
    for status in ("pending", "failed", "skipped:type", None):
        assert text_url({"id": 5, "text_status": status, "scan_status": None}) is None
    # The API refuses a quarantined attachment's text (409): no address that would.
    assert text_url({"id": 5, "text_status": "ready", "scan_status": "quarantined"}) is None
