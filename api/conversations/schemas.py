"""What the conversation routes answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.emails.schemas import Address


class ThreadAttachment(BaseModel):
    id: int
    filename: str
    content_type: str
    size: int
    text_status: str | None = Field(
        description=(
            "Its text for agents: `pending` (not converted yet), `ready` (read it at "
            "`text_url` or with the MCP tool get_attachment_text), `skipped:<reason>` or "
            "`failed`; null: stored before attachment text existed (`kave reprocess --text`)."
        )
    )
    content_url: str
    text_url: str | None = Field(description="Where the text is, once `text_status` is `ready`.")


class ThreadEmail(BaseModel):
    id: int
    message_id: str | None
    received_at: datetime
    sent_at: datetime | None = Field(description="The Date header (the sender's clock).")
    from_address: str | None
    from_name: str | None
    to: list[Address]
    cc: list[Address]
    envelope_recipient: str | None
    subject: str | None
    reply_text: str | None = Field(
        description="What this email adds: its text without quotes and signature."
    )
    forwarded_text: str | None = Field(description="A forward's forwarded message.")
    auto_submitted: bool
    bulk: bool
    attachments: list[ThreadAttachment]


class ConversationDetail(BaseModel):
    id: str
    subject: str | None = Field(description="The subject of its first email shown.")
    participants: list[Address] = Field(description="Every From, To and Cc address, once.")
    email_count: int
    last_activity_at: datetime
    emails: list[ThreadEmail] = Field(description="In the order they arrived.")
    next_cursor: str | None = Field(
        description="Pass back as `cursor` for the later emails; null: no more."
    )


class ConversationSummary(BaseModel):
    id: str
    subject: str | None = Field(description="The subject of its latest email.")
    last_from_address: str | None
    email_count: int
    last_activity_at: datetime


class ConversationPage(BaseModel):
    items: list[ConversationSummary]
    next_cursor: str | None
