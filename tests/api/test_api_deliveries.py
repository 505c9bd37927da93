"""``/api/v1/deliveries`` over the real app and database."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import T0, Rows, minutes

DELIVERIES = "/api/v1/deliveries"


def test_deliveries_with_counts_by_outcome(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    old = rows.delivery(received_at=T0, status="processed")
    email = rows.email(old)
    rows.delivery_event(old, 0, "stored", email_id=email.id)
    rows.delivery_event(old, 1, "duplicate", email_id=email.id)
    rows.delivery_event(old, 2, "failed", error="MessageParseError: raw_msg is missing")
    rows.delivery_event(old, 3, "stored", event_id=rows.event(delivery=old).id)
    new = rows.delivery(received_at=T0 + minutes(5), status="received")

    body = client.get(DELIVERIES, headers=auth).json()
    assert [item["id"] for item in body["items"]] == [new.id, old.id]
    assert body["items"][0]["outcomes"] == {"stored": 0, "duplicate": 0, "failed": 0}
    assert body["items"][1]["outcomes"] == {"stored": 2, "duplicate": 1, "failed": 1}
    assert body["items"][1]["status"] == "processed"

    received = client.get(DELIVERIES, headers=auth, params={"status": "received"}).json()
    assert [item["id"] for item in received["items"]] == [new.id]
    since = client.get(DELIVERIES, headers=auth, params={"since": "2026-11-01T12:01:00Z"})
    assert [item["id"] for item in since.json()["items"]] == [new.id]
    bad = client.get(DELIVERIES, headers=auth, params={"status": "lost"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.status"

    detail = client.get(f"{DELIVERIES}/{old.id}", headers=auth)
    assert detail.status_code == 200
    events = detail.json()["events"]
    assert [(e["index"], e["outcome"]) for e in events] == [
        (0, "stored"),
        (1, "duplicate"),
        (2, "failed"),
        (3, "stored"),
    ]
    assert events[0]["email_id"] == email.id
    assert events[2]["error"] == "MessageParseError: raw_msg is missing"
    assert detail.json()["body_sha256"] == old.body_sha256
    assert detail.json()["outcomes"] == {"stored": 2, "duplicate": 1, "failed": 1}


def test_delivery_pages_cover_every_delivery_once(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    # Same timestamps: the (string) id breaks the ties.
    deliveries = [rows.delivery(received_at=T0 + minutes(n % 2)) for n in range(7)]
    expected = [d.id for d in sorted(deliveries, key=lambda d: (d.received_at, d.id), reverse=True)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = client.get(DELIVERIES, headers=auth, params=params).json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


def test_unknown_or_malformed_delivery_id(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get(f"{DELIVERIES}/{uuid.uuid4()}", headers=auth).status_code == 404
    response = client.get(f"{DELIVERIES}/not-a-uuid", headers=auth)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "path.delivery_id"
