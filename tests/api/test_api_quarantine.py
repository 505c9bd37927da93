"""The API on sender trust, hygiene flags and the malware scan: the fields are shown, and a
quarantined attachment's bytes are refused, with the raw message that carries them."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import Rows

EMAILS = "/api/v1/emails"


def test_a_quarantined_attachment_and_its_raw_message_are_refused(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    email = rows.email(
        sender_trust="pass",
        sender_trust_reasons={"verdict": "aligned DKIM signature"},
        hygiene_flags=["hidden_html_text"],
    )
    bad = rows.attachment(email, 0, "eicar.com", "application/octet-stream", b"EICAR-like")
    good = rows.attachment(email, 1, "notes.txt", "text/plain", b"fine")
    bad.scan_status, bad.scan_signature = "quarantined", "Eicar-Test-Signature"
    good.scan_status = "clean"
    bad.text_status = good.text_status = "ready"
    rows.add(bad, good)

    detail = client.get(f"{EMAILS}/{email.id}", headers=auth).json()
    assert (detail["sender_trust"], detail["hygiene_flags"]) == ("pass", ["hidden_html_text"])
    assert detail["sender_trust_reasons"] == {"verdict": "aligned DKIM signature"}
    assert [a["scan_status"] for a in detail["attachments"]] == ["quarantined", "clean"]
    # Both texts exist; the view points only at the one the API serves.
    assert [a["text_url"] for a in detail["attachments"]] == [
        None,
        f"/api/v1/attachments/{good.id}/text",
    ]

    refused = client.get(f"/api/v1/attachments/{bad.id}/content", headers=auth)
    assert refused.status_code == 409
    assert "quarantined" in refused.json()["message"]
    assert "EICAR-like" not in refused.text
    assert client.get(f"{EMAILS}/{email.id}/raw", headers=auth).status_code == 409
    # Its text, too: whatever the converter made of it is the malware's.
    bad_text = client.get(f"/api/v1/attachments/{bad.id}/text", headers=auth)
    assert bad_text.status_code == 409
    served = client.get(f"/api/v1/attachments/{good.id}/content", headers=auth)
    assert (served.status_code, served.content) == (200, b"fine")


def test_an_unscanned_attachment_is_served_and_says_so(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    email = rows.email()
    attachment = rows.attachment(email, 0, "a.txt", "text/plain", b"a")
    attachment.scan_status = "unscanned"
    rows.add(attachment)
    detail = client.get(f"{EMAILS}/{email.id}", headers=auth).json()
    assert detail["attachments"][0]["scan_status"] == "unscanned"
    assert (
        client.get(f"/api/v1/attachments/{attachment.id}/content", headers=auth).status_code == 200
    )
    assert client.get(f"{EMAILS}/{email.id}/raw", headers=auth).status_code == 200
