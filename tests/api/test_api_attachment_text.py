"""GET /api/v1/attachments/{id}/text and the text fields of email details."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.contract import text_object_key
from shared.models import Attachment
from tests.api.conftest import Rows

EMAILS = "/api/v1/emails"
TEXT = "# Invoice 4711\n\n| item | amount |\n| --- | --- |\n| tea | 3 |\n"


def test_a_ready_text_is_served_like_a_download(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    email = rows.email(attachments=[("invoice.pdf", "application/pdf", b"%PDF-1.4 4711")])
    sha256 = hashlib.sha256(b"%PDF-1.4 4711").hexdigest()
    rows.store.put(text_object_key(sha256), TEXT.encode())
    with Session(rows.engine) as session, session.begin():
        session.execute(
            update(Attachment).values(
                text_status="ready", text_characters=len(TEXT), text_excerpt=TEXT[:14]
            )
        )
    detail = client.get(f"{EMAILS}/{email.id}", headers=auth).json()
    attachment = detail["attachments"][0]
    assert attachment["text_status"] == "ready"
    assert attachment["text_excerpt"] == "# Invoice 4711"
    response = client.get(attachment["text_url"], headers=auth)
    assert response.status_code == 200
    assert response.text == TEXT
    assert response.headers["Content-Type"] == "text/markdown; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert response.headers["ETag"] == f'"{hashlib.sha256(TEXT.encode()).hexdigest()}"'
    assert client.get(attachment["text_url"]).status_code == 401


def test_no_text_yet_is_a_404_that_says_the_status(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    email = rows.email(attachments=[("photo.jpg", "image/jpeg", b"\xff\xd8\xff")])
    with Session(rows.engine) as session, session.begin():
        session.execute(update(Attachment).values(text_status="skipped:type"))
    attachment = client.get(f"{EMAILS}/{email.id}", headers=auth).json()["attachments"][0]
    assert attachment["text_url"] is None
    response = client.get(f"/api/v1/attachments/{attachment['id']}/text", headers=auth)
    assert response.status_code == 404
    assert "skipped:type" in response.text
