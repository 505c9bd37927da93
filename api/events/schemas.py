"""What the event routes answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.openapi import EXAMPLE_TIME, example

_EVENT: dict[str, Any] = {
    "id": 9,
    "kind": "open",
    "occurred_at": "2026-11-26T09:20:11Z",
    "mandrill_id": "b1946ac92492d2347c6235b4d2611184",
    "recipient": "customer@example.net",
    "delivery_id": "6c1e0d8a-2f4b-4c47-9a53-0b1f3c2e9d11",
    "created_at": EXAMPLE_TIME,
    "payload": {"event": "open", "ts": 1795684811, "_id": "b1946ac92492d2347c6235b4d2611184"},
}


class EventOut(BaseModel):
    model_config = example(_EVENT)

    id: int
    kind: str = Field(description="Mandrill's event name, or `blacklist`/`whitelist` for sync.")
    occurred_at: datetime | None
    mandrill_id: str | None
    recipient: str | None
    delivery_id: str
    created_at: datetime
    payload: dict[str, Any] = Field(description="The event as Mandrill sent it.")


class EventPage(BaseModel):
    model_config = example({"items": [_EVENT], "next_cursor": None})

    items: list[EventOut]
    next_cursor: str | None
