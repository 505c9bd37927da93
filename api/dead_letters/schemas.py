"""What the dead-letter routes answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from api.openapi import EXAMPLE_TIME, example

_DEAD_LETTER: dict[str, Any] = {
    "id": 7,
    "delivery_id": "6c1e0d8a-2f4b-4c47-9a53-0b1f3c2e9d11",
    "event_index": 3,
    "kind": "inbound",
    "error_class": "MessageParseError",
    "message": "raw_msg is missing",
    "attempts": 1,
    "status": "open",
    "first_seen_at": EXAMPLE_TIME,
    "last_seen_at": EXAMPLE_TIME,
    "resolved_at": None,
}


class DeadLetterOut(BaseModel):
    model_config = example(_DEAD_LETTER)

    id: int
    delivery_id: str
    event_index: int | None = Field(
        description="Null when the whole delivery failed; negative for a hand-off (kind "
        "`dispatch`): minus the dispatch id."
    )
    kind: str | None
    error_class: str
    message: str
    attempts: int
    status: str = Field(description="`open`, `replayed` or `discarded`.")
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None


class DeadLetterDetail(DeadLetterOut):
    model_config = example({**_DEAD_LETTER, "traceback": "Traceback (most recent call last):…"})

    traceback: str | None


class DeadLetterPage(BaseModel):
    model_config = example({"items": [_DEAD_LETTER], "next_cursor": None})

    items: list[DeadLetterOut]
    next_cursor: str | None


class ReplayQueued(BaseModel):
    model_config = example({"status": "queued", "dead_letter_id": 7, "task_id": "c0a8…"})

    status: Literal["queued"] = "queued"
    dead_letter_id: int
    task_id: str
