"""``/api/v1/events`` over the real app and database."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import T0, Rows, minutes

EVENTS = "/api/v1/events"


def ids(client: TestClient, auth: dict[str, str], **params: Any) -> list[int]:
    response = client.get(EVENTS, headers=auth, params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_events_are_listed_newest_first_and_filtered(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    opened = rows.event("open", created_at=T0, occurred_at=T0, recipient="A@example.net")
    bounced = rows.event(
        "hard_bounce", created_at=T0 + minutes(1), occurred_at=T0 + minutes(5), recipient="b@x.io"
    )
    synced = rows.event(
        "blacklist", created_at=T0 + minutes(2), occurred_at=None, recipient="a@example.net"
    )
    body = client.get(EVENTS, headers=auth).json()
    assert [item["id"] for item in body["items"]] == [synced.id, bounced.id, opened.id]
    assert body["items"][1]["kind"] == "hard_bounce"
    assert body["items"][1]["payload"] == {"event": "hard_bounce", "msg": {"email": "b@x.io"}}

    assert ids(client, auth, kind="hard_bounce") == [bounced.id]
    assert ids(client, auth, kind="HARD_BOUNCE") == []  # kinds are exact
    assert ids(client, auth, recipient="a@EXAMPLE.net") == [synced.id, opened.id]
    # Time filters are on when the event happened; events without a time are left out.
    assert ids(client, auth, since="2026-11-01T12:01:00Z") == [bounced.id]
    assert ids(client, auth, until="2026-11-01T12:01:00Z") == [opened.id]


def test_event_pages_cover_every_event_once(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    delivery = rows.delivery()
    events = [rows.event(created_at=T0 + minutes(n % 4), delivery=delivery) for n in range(11)]
    expected = [e.id for e in sorted(events, key=lambda e: (e.created_at, e.id), reverse=True)]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        body = client.get(EVENTS, headers=auth, params=params).json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


def test_a_cursor_of_another_list_is_refused(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    for n in range(3):
        rows.delivery(received_at=T0 + minutes(n))
    cursor = client.get("/api/v1/deliveries", headers=auth, params={"limit": 1}).json()[
        "next_cursor"
    ]
    response = client.get(EVENTS, headers=auth, params={"cursor": cursor})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.cursor"
