"""What the dispatch routes answer."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.openapi import EXAMPLE_TIME, example

_DISPATCH_EXAMPLE = {
    "id": 7,
    "email_id": 42,
    "route": "tickets",
    "idempotency_key": "5d41402abc4b2a76b9719d911017c592ae1d6e4c4e5f8a1b2c3d4e5f60718293",
    "status": "delivered",
    "attempts": 1,
    "last_status_code": 204,
    "last_error": None,
    "next_attempt_at": EXAMPLE_TIME,
    "created_at": EXAMPLE_TIME,
    "updated_at": EXAMPLE_TIME,
    "delivered_at": EXAMPLE_TIME,
}


class DispatchOut(BaseModel):
    model_config = example(_DISPATCH_EXAMPLE)

    id: int
    email_id: int
    route: str | None = Field(description="The matched route; null: no route matched.")
    idempotency_key: str = Field(
        description="Stable per (email, route); sent as `webhook-id` / task kwarg: handlers "
        "drop repeats by it."
    )
    status: Literal["pending", "delivered", "dead", "unrouted"]
    attempts: int
    last_status_code: int | None = Field(description="The HTTP handler's last answer.")
    last_error: str | None = Field(description="The last failure's class, e.g. `http_500`.")
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class DispatchList(BaseModel):
    model_config = example({"items": [_DISPATCH_EXAMPLE]})

    items: list[DispatchOut]
