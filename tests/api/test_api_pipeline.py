"""The API over what the real pipeline stored: a signed webhook through the uvicorn
receiver, a real Celery worker, then the emails and their bytes read back from the
uvicorn API, a process of its own."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import Engine

from shared.models import User
from tests.api.conftest import get_token
from tests.services import FIXTURES
from tests.webhooks import fixture_events, post_events, wait_for_deliveries


@pytest.mark.usefixtures("worker")
def test_emails_and_attachments_of_a_real_delivery(
    receiver: str,
    api: str,
    engine: Engine,
    make_user: Callable[..., User],
) -> None:
    name = "inbound_with_multiple_attachments.json"
    response = post_events(receiver, fixture_events(name))
    assert response.status_code == 200
    delivery_id = response.json()["delivery_id"]
    wait_for_deliveries(engine, [delivery_id])

    make_user()
    with httpx.Client(base_url=api, timeout=10) as client:
        auth = {"Authorization": f"Bearer {get_token(client)}"}

        delivery = client.get(f"/api/v1/deliveries/{delivery_id}", headers=auth).json()
        assert delivery["status"] == "processed"
        assert delivery["outcomes"] == {"stored": 1, "duplicate": 0, "failed": 0}
        email_id = delivery["events"][0]["email_id"]

        listed = client.get(
            "/api/v1/emails", headers=auth, params={"recipient": "INBOX@example.com"}
        ).json()
        assert [item["id"] for item in listed["items"]] == [email_id]

        email = client.get(f"/api/v1/emails/{email_id}", headers=auth).json()
        assert email["subject"] == "test 3 with multiple attachments"
        assert email["delivery_id"] == delivery_id

        msg = json.loads((FIXTURES / name).read_text(encoding="utf-8"))[0]["msg"]
        sent = {
            attachment["name"]: (
                base64.b64decode(attachment["content"])
                if attachment.get("base64", True)
                else attachment["content"].encode("utf-8")
            )
            for attachment in msg["attachments"].values()
        }
        downloaded = {}
        for attachment in email["attachments"]:
            content = client.get(attachment["content_url"], headers=auth)
            assert content.status_code == 200
            digest = hashlib.sha256(content.content).hexdigest()
            assert digest == attachment["sha256"]
            downloaded[attachment["filename"]] = digest
        assert downloaded == {
            filename: hashlib.sha256(content).hexdigest() for filename, content in sent.items()
        }

        raw = client.get(f"/api/v1/emails/{email_id}/raw", headers=auth)
        assert raw.content == msg["raw_msg"].encode("utf-8")
        assert hashlib.sha256(raw.content).hexdigest() == email["raw_sha256"]
