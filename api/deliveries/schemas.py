"""What the delivery routes answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.openapi import EXAMPLE_TIME, example


class OutcomeCounts(BaseModel):
    stored: int = 0
    duplicate: int = 0
    failed: int = 0


_DELIVERY: dict[str, Any] = {
    "id": "6c1e0d8a-2f4b-4c47-9a53-0b1f3c2e9d11",
    "received_at": EXAMPLE_TIME,
    "status": "processed",
    "event_count": 2,
    "attempts": 1,
    "error": None,
    "handled_at": "2026-11-26T09:14:04Z",
    "body_size": 150233,
    "outcomes": {"stored": 1, "duplicate": 1, "failed": 0},
}


class DeliverySummary(BaseModel):
    model_config = example(_DELIVERY)

    id: str
    received_at: datetime
    status: str = Field(description="`received`, `processed` or `failed`.")
    event_count: int | None
    attempts: int
    error: str | None
    handled_at: datetime | None
    body_size: int
    outcomes: OutcomeCounts


class DeliveryEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    index: int
    kind: str
    outcome: str = Field(description="`stored`, `duplicate` or `failed`.")
    email_id: int | None
    event_id: int | None
    error: str | None


class DeliveryDetail(DeliverySummary):
    model_config = example(
        {
            **_DELIVERY,
            "request_id": "3f1c2b0e9d8a4c7b",
            "body_sha256": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
            "events": [
                {
                    "index": 0,
                    "kind": "inbound",
                    "outcome": "stored",
                    "email_id": 42,
                    "event_id": None,
                    "error": None,
                }
            ],
        }
    )

    request_id: str
    body_sha256: str
    events: list[DeliveryEventOut]


class DeliveryPage(BaseModel):
    model_config = example({"items": [_DELIVERY], "next_cursor": None})

    items: list[DeliverySummary]
    next_cursor: str | None
