"""What the search route answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class SearchHit(BaseModel):
    id: int
    conversation_id: str | None
    received_at: datetime
    from_address: str | None
    from_name: str | None
    envelope_recipient: str | None
    subject: str | None
    snippet: str = Field(description="Where the words matched, marked **like this**.")
    attachment_id: int | None = Field(
        default=None,
        description=(
            "The attachment whose extracted text matched, when the email's own text did "
            "not (its text: `/api/v1/attachments/{id}/text`)."
        ),
    )


class SearchPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None = Field(description="Pass back as `cursor`; null: no more.")
