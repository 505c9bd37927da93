"""An attachment, as email details list it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from api.openapi import example

ATTACHMENT_EXAMPLE: dict[str, Any] = {
    "id": 11,
    "filename": "invoice.pdf",
    "content_type": "application/pdf",
    "size": 48213,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "inline": False,
    "content_id": None,
    "sniffed_type": "application/pdf",
    "type_mismatch": False,
    "scan_status": "clean",
    "content_url": "/api/v1/attachments/11/content",
    "text_status": "ready",
    "text_excerpt": "# Invoice 4711\n\n| item | amount |\n| --- | --- |",
    "text_url": "/api/v1/attachments/11/text",
}


class AttachmentOut(BaseModel):
    model_config = example(ATTACHMENT_EXAMPLE)

    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    inline: bool
    content_id: str | None
    sniffed_type: str | None = Field(description="The type its bytes say it is; null: unknown.")
    type_mismatch: bool = Field(
        description="The bytes contradict the declared type (e.g. an executable sent as PDF)."
    )
    scan_status: str | None = Field(
        default=None,
        description="The malware scan: `clean`, `quarantined` (a signature matched: the "
        "bytes, the text and the raw message are refused), `unscanned` (the scanner could "
        "not be reached: not known to be clean); null: scanning is off.",
    )
    content_url: str = Field(description="Where to download the bytes.")
    text_status: str | None = Field(
        default=None,
        description=(
            "Its text for agents: pending, ready, skipped:<reason> (type, container, size, "
            "expansion, time, memory, pages, output, no_text, empty, removed) or failed; "
            "null for attachments stored before text existed."
        ),
    )
    text_excerpt: str | None = Field(default=None, description="The text's first characters.")
    text_url: str | None = Field(
        default=None, description="Where to read the whole text (Markdown), once ready."
    )
