"""``GET /api/v1/emails/{id}/dispatches``: the hand-offs of an email."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shared.models import Dispatch
from tests.api.conftest import Rows


def test_lists_an_emails_dispatches(client: TestClient, auth: dict[str, str], rows: Rows) -> None:
    email = rows.email(
        conversation_id="root@example.org",
        reply_text="Yes.",
        forwarded_text="From: Ana <ana@example.org>\n\nthe plan",
        bulk=True,
    )
    other = rows.email()
    rows.add(
        Dispatch(
            email_id=email.id,
            route="tickets",
            idempotency_key="a" * 64,
            status="dead",
            attempts=3,
            last_status_code=500,
            last_error="http_500",
        ),
        Dispatch(email_id=other.id, route=None, idempotency_key="b" * 64, status="unrouted"),
    )
    response = client.get(f"/api/v1/emails/{email.id}/dispatches", headers=auth)
    assert response.status_code == 200, response.text
    (item,) = response.json()["items"]
    assert {k: item[k] for k in ("route", "status", "attempts", "last_status_code")} == {
        "route": "tickets",
        "status": "dead",
        "attempts": 3,
        "last_status_code": 500,
    }
    assert item["idempotency_key"] == "a" * 64
    detail = client.get(f"/api/v1/emails/{email.id}", headers=auth).json()
    assert (detail["conversation_id"], detail["reply_text"]) == ("root@example.org", "Yes.")
    assert detail["auto_submitted"] is False
    assert detail["bulk"] is True
    assert detail["forwarded_text"] == "From: Ana <ana@example.org>\n\nthe plan"


def test_unknown_email_is_404_and_no_token_is_401(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/api/v1/emails/999999/dispatches", headers=auth).status_code == 404
    assert client.get("/api/v1/emails/1/dispatches").status_code == 401
