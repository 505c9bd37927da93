"""GET /api/v1/search over rows as the worker leaves them: words in the email's language,
filters, a scoped key's mailboxes, pages, snippets, and the index really answering."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from api.search.language import SEARCH_CONFIGS
from shared.settings import Settings
from tests.api.agents import SUPPORT, make_key
from tests.api.conftest import T0, Rows
from worker.text.indexing import index_text


def _ids(response: object) -> list[int]:
    body = response.json()  # type: ignore[attr-defined]
    return [item["id"] for item in body["items"]]


def test_words_filters_pages_and_snippets(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    german = rows.email(
        subject="Ihre Bestellung",
        text_body="Anbei finden Sie die Rechnungen für November.",
        headers=[["Content-Language", "de-DE"]],
        envelope_recipient="support+billing@example.com",
        received_at=T0,
    )
    english = rows.email(
        subject="Invoices from ACME",
        text_body="Please find the invoices attached. Kind regards, ACME billing",
        headers=[["Content-Language", "en"]],
        from_address="billing@acme.example",
        envelope_recipient="sales@example.com",
        received_at=T0 + timedelta(minutes=1),
        sender_trust="pass",
    )
    unknown = rows.email(
        subject="hello",
        text_body="the invoice number is 4711, the quarterly report follows",
        received_at=T0 + timedelta(minutes=2),
        bulk=True,
    )
    rows.email(subject="lunch", text_body="pizza on friday", received_at=T0)

    def search(**params: object) -> list[int]:
        response = client.get("/api/v1/search", headers=auth, params=params)
        assert response.status_code == 200, response.text
        return _ids(response)

    # "invoice" is stemmed to invoic in English mail and kept as written in unknown mail.
    assert search(q="invoice") == [unknown.id, english.id]
    assert search(q="Rechnung") == [german.id]  # German stemming
    assert search(q='"quarterly report"') == [unknown.id]
    assert search(q="invoice -quarterly") == [english.id]
    assert search(q="!! ::") == []  # no words: nothing to look for
    assert search(q="invoice", sender="BILLING@acme.example") == [english.id]
    assert search(q="invoice", bulk="true") == [unknown.id]
    assert search(q="invoice", sender_trust="pass") == [english.id]
    assert search(q="invoice", sender_trust="fail") == []
    refused = client.get("/api/v1/search", headers=auth, params={"q": "x", "sender_trust": "ok"})
    assert refused.status_code == 422
    assert search(q="invoice", until=(T0 + timedelta(minutes=2)).isoformat()) == [english.id]

    first = client.get("/api/v1/search", headers=auth, params={"q": "invoice", "limit": 1}).json()
    assert [hit["id"] for hit in first["items"]] == [unknown.id]
    assert "**invoice**" in first["items"][0]["snippet"]
    second = client.get(
        "/api/v1/search",
        headers=auth,
        params={"q": "invoice", "limit": 1, "cursor": first["next_cursor"]},
    ).json()
    assert [hit["id"] for hit in second["items"]] == [english.id]
    assert second["next_cursor"] is None


def test_a_scoped_key_finds_only_its_mailboxes(
    client: TestClient, rows: Rows, clean_db: Engine, api_settings: Settings
) -> None:
    mine = rows.email(text_body="shipment delayed", envelope_recipient="support+x@example.com")
    rows.email(text_body="shipment delayed", envelope_recipient="sales@example.com")
    key = make_key(clean_db, "scoped", mailboxes=(SUPPORT,))
    response = client.get("/api/v1/search", headers=key.headers, params={"q": "shipment"})
    assert _ids(response) == [mine.id]


def test_the_index_answers_and_the_configs_are_the_functions(clean_db: Engine) -> None:
    with clean_db.connect() as connection:
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = connection.execute(
            text("EXPLAIN SELECT id FROM emails WHERE search_document @@ 'invoic'::tsquery")
        ).scalars()
        assert "ix_emails_search" in "\n".join(plan)
        codes = ["xx", "en", "de-AT", "PT-br", "nb", "fr", "ja", ""]
        chosen = {
            connection.execute(
                text("SELECT kave_search_config(CAST(:headers AS jsonb))::text"),
                {"headers": f'[["Content-Language", "{code}"]]'},
            ).scalar()
            for code in codes
        }
        functions_configs = connection.execute(
            text(
                "SELECT regexp_matches(prosrc, '''([a-z]+)''::regconfig', 'g') FROM pg_proc "
                "WHERE proname = 'kave_search_config'"
            )
        ).scalars()
        listed = {match[0] for match in functions_configs}
    assert chosen == {"simple", "english", "german", "portuguese", "norwegian", "french"}
    assert listed == set(SEARCH_CONFIGS)


def test_attachment_text_pages_merge_with_the_email_text(
    client: TestClient, auth: dict[str, str], rows: Rows, clean_db: Engine
) -> None:
    """Hits from the emails' own text and from attachment text come newest first in one
    sequence of pages; a ready text only counts while its attachment's text is ready
    and its content kept."""
    oldest = rows.email(text_body="the walrus ledger", received_at=T0)
    in_pdf = rows.email(
        text_body="see attached",
        received_at=T0 + timedelta(minutes=1),
        attachments=[("ledger.pdf", "application/pdf", b"%PDF-1.4 ledger")],
    )
    newest = rows.email(subject="walrus ledger again", received_at=T0 + timedelta(minutes=2))
    removed = rows.email(
        text_body="see attached",
        received_at=T0 + timedelta(minutes=3),
        attachments=[("old.pdf", "application/pdf", b"%PDF-1.4 old ledger")],
    )
    with Session(clean_db) as session, session.begin():
        session.execute(text("UPDATE attachments SET text_status = 'ready'"))
        session.execute(
            text("UPDATE attachments SET content_removed_at = now() WHERE email_id = :id"),
            {"id": removed.id},
        )
        for sha256, words in session.execute(
            text("SELECT sha256, filename FROM attachments")
        ).all():
            index_text(session, sha256, f"# {words}\n\nThe walrus ledger, page 2. Total 12.")

    pages: list[list[int]] = []
    cursor = None
    while True:
        params = {"q": "walrus ledger", "limit": 1, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/search", headers=auth, params=params).json()
        pages.append([hit["id"] for hit in body["items"]])
        if body["items"] and body["items"][0]["id"] == in_pdf.id:
            hit = body["items"][0]
            assert hit["attachment_id"] is not None
            assert "**walrus**" in hit["snippet"]
            assert "page 2" in hit["snippet"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [[newest.id], [in_pdf.id], [oldest.id]]
