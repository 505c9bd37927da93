"""``/api/v1/emails`` and ``/api/v1/attachments`` over the real app, database and S3."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.models import Email
from shared.objectstore import S3ObjectStore
from tests.api.conftest import T0, Rows, minutes

EMAILS = "/api/v1/emails"


def _cursor(at: str, id_: object) -> str:
    """A cursor made by hand, as a curious client might."""
    return base64.urlsafe_b64encode(json.dumps([at, id_]).encode()).decode().rstrip("=")


def ids(client: TestClient, auth: dict[str, str], **params: Any) -> list[int]:
    response = client.get(EMAILS, headers=auth, params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


@pytest.fixture
def mailbox(rows: Rows) -> dict[str, Email]:
    """Four emails that differ in every filtered field, oldest first."""
    return {
        "ana": rows.email(
            received_at=T0,
            from_address="Ana@Example.org",
            subject="Invoice November",
            spf_result="pass",
            spam_score=0.5,
            attachments=[("invoice.pdf", "application/pdf", b"%PDF-1.4 invoice")],
        ),
        "bob": rows.email(
            received_at=T0 + minutes(1),
            from_address="bob@example.net",
            subject="Re: 100% done",
            to=[{"name": None, "address": "Carol@Example.com"}],
            cc=[{"name": "Dave", "address": "dave@example.com"}],
            spf_result="fail",
            spam_score=7.0,
        ),
        "cid": rows.email(
            received_at=T0 + minutes(2),
            subject="1000 things",
            envelope_recipient="other@example.com",
            to=[],
            spam_score=None,
        ),
        "dan": rows.email(
            received_at=T0 + minutes(3),
            subject=None,
            spf_result="softfail",
            spam_score=2.0,
            attachments=[("a.txt", "text/plain", b"a"), ("b.png", "image/png", b"\x89PNG")],
        ),
    }


def test_lists_newest_first_with_summary_fields(
    client: TestClient, auth: dict[str, str], mailbox: dict[str, Email]
) -> None:
    response = client.get(EMAILS, headers=auth)
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    assert [item["id"] for item in body["items"]] == [
        mailbox[name].id for name in ("dan", "cid", "bob", "ana")
    ]
    bob = body["items"][2]
    assert bob["from_address"] == "bob@example.net"
    assert bob["subject"] == "Re: 100% done"
    assert bob["spf_result"] == "fail"
    assert bob["spam_score"] == 7.0
    assert bob["to"] == [{"name": None, "address": "Carol@Example.com"}]
    assert bob["attachment_count"] == 0
    assert body["items"][0]["attachment_count"] == 2
    assert "text_body" not in bob


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"sender": "ana@example.ORG"}, ["ana"]),
        ({"recipient": "carol@example.com"}, ["bob"]),  # To, any case
        ({"recipient": "DAVE@example.com"}, ["bob"]),  # Cc
        ({"recipient": "other@example.com"}, ["cid"]),  # envelope recipient
        ({"recipient": "inbox@example.com"}, ["dan", "bob", "ana"]),
        ({"subject": "invoice"}, ["ana"]),
        ({"subject": "100%"}, ["bob"]),  # % is text, not a wildcard ("1000 things")
        ({"subject": "_"}, []),
        ({"since": "2026-11-01T12:01:00Z"}, ["dan", "cid", "bob"]),
        ({"until": "2026-11-01T12:01:00Z"}, ["ana"]),
        ({"since": "2026-11-01T13:01:00+01:00", "until": "2026-11-01T12:03:00Z"}, ["cid", "bob"]),
        ({"has_attachments": "true"}, ["dan", "ana"]),
        ({"has_attachments": "false"}, ["cid", "bob"]),
        ({"spf": "PASS"}, ["ana"]),
        ({"max_spam_score": "2"}, ["dan", "ana"]),  # no score: left out
        ({"max_spam_score": "2", "has_attachments": "true", "spf": "softfail"}, ["dan"]),
    ],
)
def test_filters(
    client: TestClient,
    auth: dict[str, str],
    mailbox: dict[str, Email],
    params: dict[str, str],
    expected: list[str],
) -> None:
    assert ids(client, auth, **params) == [mailbox[name].id for name in expected]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "101"}, "query.limit"),
        ({"limit": "0"}, "query.limit"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "query.cursor"),
        ({"cursor": _cursor("2026-11-01T12:00:00+00:00", 10**30)}, "query.cursor"),
        ({"cursor": _cursor("2026-11-01T12:00:00", 5)}, "query.cursor"),
        ({"cursor": _cursor("2026-11-01T12:00:00+00:00", "5")}, "query.cursor"),
        ({"since": "yesterday"}, "query.since"),
        ({"since": "1700000000"}, "query.since"),  # a Unix time is not an instant here
        ({"until": "2026-11-01T12:00:00"}, "query.until"),  # no zone
        ({"max_spam_score": "nan"}, "query.max_spam_score"),
        ({"sender": "a\x00b"}, "query.sender"),
        ({"has_attachments": "maybe"}, "query.has_attachments"),
    ],
)
def test_invalid_parameters_are_422_naming_the_field(
    client: TestClient, auth: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = client.get(EMAILS, headers=auth, params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["status"] == "error"
    assert [error["field"] for error in body["errors"]] == [field]
    assert field in body["message"]


def test_pages_cover_every_email_once_even_while_new_ones_arrive(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    # Ties on received_at on purpose: the id breaks them.
    emails = [rows.email(received_at=T0 + minutes(n // 3)) for n in range(23)]
    expected = [e.id for e in sorted(emails, key=lambda e: (e.received_at, e.id), reverse=True)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        body = client.get(EMAILS, headers=auth, params=params).json()
        assert len(body["items"]) <= 5
        seen += [item["id"] for item in body["items"]]
        pages += 1
        if pages == 2:
            rows.email(received_at=T0 + minutes(60))  # newer: belongs before page 1
            rows.email(received_at=T0 - minutes(60))  # older: must come on a later page
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 5
    assert seen[:23] == expected
    assert len(seen) == len(set(seen)) == 24


def test_pagination_keeps_the_filters(client: TestClient, auth: dict[str, str], rows: Rows) -> None:
    wanted = [rows.email(received_at=T0 + minutes(n), spf_result="pass") for n in range(5)]
    for n in range(5):
        rows.email(received_at=T0 + minutes(n), spf_result="fail")
    first = client.get(EMAILS, headers=auth, params={"spf": "pass", "limit": 3}).json()
    second = client.get(
        EMAILS, headers=auth, params={"spf": "pass", "limit": 3, "cursor": first["next_cursor"]}
    ).json()
    assert second["next_cursor"] is None
    got = [item["id"] for item in first["items"] + second["items"]]
    assert got == [email.id for email in reversed(wanted)]


def test_detail_has_every_parsed_field_and_the_attachments(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    email = rows.email(
        from_name="Ana Lima",
        cc=[{"name": "Cc", "address": "cc@example.com"}],
        bcc=[{"name": None, "address": "bcc@example.com"}],
        reply_to=[{"name": None, "address": "reply@example.org"}],
        in_reply_to="<parent@example.org>",
        references=["<root@example.org>", "<parent@example.org>"],
        text_body="Hello",
        html_body="<p>Hello</p>",
        headers=[["From", "Ana Lima <ana@example.org>"], ["X-Thing", "1"]],
        tags=["support"],
        spam_score=1.5,
        spam_rules=[{"name": "HTML_MESSAGE", "score": 0.0, "description": "HTML included"}],
        spf_result="pass",
        spf_detail="sender SPF authorized",
        dkim_signed=True,
        dkim_valid=False,
        sent_at=T0 - minutes(1),
        mandrill_ts=T0,
        attachments=[("résumé.pdf", "application/pdf", b"%PDF"), ("logo.png", "image/png", b"P")],
    )
    response = client.get(f"{EMAILS}/{email.id}", headers=auth)
    assert response.status_code == 200
    body = response.json()
    assert body["from_name"] == "Ana Lima"
    assert body["bcc"] == [{"name": None, "address": "bcc@example.com"}]
    assert body["references"] == ["<root@example.org>", "<parent@example.org>"]
    assert body["headers"] == [["From", "Ana Lima <ana@example.org>"], ["X-Thing", "1"]]
    assert body["text_body"] == "Hello"
    assert body["html_body"] == "<p>Hello</p>"
    assert body["spam_rules"][0]["name"] == "HTML_MESSAGE"
    assert (body["dkim_signed"], body["dkim_valid"]) == (True, False)
    assert body["spf_detail"] == "sender SPF authorized"
    assert body["sent_at"] == "2026-11-01T11:59:00Z"
    assert body["raw_sha256"] == email.raw_sha256
    assert body["raw_url"] == f"/api/v1/emails/{email.id}/raw"
    assert body["attachment_count"] == 2
    first = body["attachments"][0]
    assert first["filename"] == "résumé.pdf"
    assert first["sha256"] == hashlib.sha256(b"%PDF").hexdigest()
    assert first["size"] == 4
    assert first["inline"] is False
    assert first["content_url"] == f"/api/v1/attachments/{first['id']}/content"


def test_raw_message_downloads_as_rfc822(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    raw = "From: Ana <ana@example.org>\r\nSubject: Olá\r\n\r\nCorpo\r\n".encode()
    email = rows.email(raw=raw)
    response = client.get(f"{EMAILS}/{email.id}/raw", headers=auth)
    assert response.status_code == 200
    assert response.content == raw
    assert response.headers["Content-Type"] == "message/rfc822"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_attachment_download_is_the_stored_bytes(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    content = bytes(range(256)) * 40
    email = rows.email(attachments=[('a "quoted"\\name\r\n.html', "text/html", content)])
    detail = client.get(f"{EMAILS}/{email.id}", headers=auth).json()
    attachment = detail["attachments"][0]
    response = client.get(attachment["content_url"], headers=auth)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == attachment["sha256"]
    assert attachment["sha256"] == hashlib.sha256(content).hexdigest()
    assert response.headers["ETag"] == f'"{attachment["sha256"]}"'
    # Sent as a download that no browser renders, whatever type the sender declared.
    assert response.headers["Content-Type"] == "text/html"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "sandbox"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="a _quoted__name__.html"; ')
    assert "filename*=UTF-8''a%20%22quoted%22%5Cname%0D%0A.html" in disposition


def test_malformed_content_type_is_served_as_octet_stream(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    email = rows.email(attachments=[("x", "text/html\r\nX-Evil: 1", b"<script>")])
    detail = client.get(f"{EMAILS}/{email.id}", headers=auth).json()
    response = client.get(detail["attachments"][0]["content_url"], headers=auth)
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert "X-Evil" not in response.headers


def test_altered_object_is_not_served(
    client: TestClient, auth: dict[str, str], rows: Rows, object_store: S3ObjectStore
) -> None:
    email = rows.email(attachments=[("a.txt", "text/plain", b"original")])
    detail = client.get(f"{EMAILS}/{email.id}", headers=auth).json()
    attachment = detail["attachments"][0]
    object_store.put(f"attachments/{attachment['sha256']}", b"altered")
    response = client.get(attachment["content_url"], headers=auth)
    assert response.status_code == 503
    assert response.json()["status"] == "error"


def test_unknown_ids_are_404(client: TestClient, auth: dict[str, str], rows: Rows) -> None:
    for path in (f"{EMAILS}/999", f"{EMAILS}/999/raw", "/api/v1/attachments/999/content"):
        response = client.get(path, headers=auth)
        assert response.status_code == 404
        assert response.json()["message"].startswith("no ")
    assert client.get(f"{EMAILS}/{2**63}", headers=auth).status_code == 422


def test_missing_object_is_404_saying_so(
    client: TestClient, auth: dict[str, str], rows: Rows, object_store: S3ObjectStore
) -> None:
    email = rows.email(raw=b"Subject: gone\r\n\r\n")
    object_store.client.delete_object(Bucket=object_store.bucket, Key=email.raw_key)
    response = client.get(f"{EMAILS}/{email.id}/raw", headers=auth)
    assert response.status_code == 404
    assert "missing from the object store" in response.json()["message"]
