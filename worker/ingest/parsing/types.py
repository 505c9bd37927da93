"""What parsing produces: frozen dataclasses, the limits it enforces and its errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from worker.ingest.parsing.values import sha256_text


class PermanentEventError(ValueError):
    """An event that can never be processed, whatever we retry.

    ``str(exc)`` is the reason and is safe to store: it names fields and JSON types, never
    payload content.
    """


class LimitExceededError(PermanentEventError):
    """An email over one of the :class:`EmailLimits`; ``limit`` names which one.

    Raised before the email is parsed in full (and so before anything of it is stored);
    the message gives the numbers, never content.
    """

    def __init__(
        self, limit: str, found: int, allowed: int, what: str, *, at_least: bool = False
    ) -> None:
        self.limit = limit
        self.found = found
        self.allowed = allowed
        count = f"at least {found}" if at_least else str(found)
        super().__init__(f"the email has {count} {what}, over the limit of {allowed}")


@dataclass(frozen=True, slots=True)
class EmailLimits:
    """Caps on one inbound email, far above real mail (the worker reads them from the
    settings ``KAVE_EMAIL_MAX_*``).

    A 1 MB message of 33,000 tiny parts costs the stdlib parser seconds and would become
    33,000 attachments; these caps refuse such input before it is parsed in full.
    """

    # Entities: the message, every part (containers too) and every attached message.
    max_mime_parts: int = 1000
    # Multiparts and attached messages around the deepest part.
    max_nesting_depth: int = 20
    # The header sections of the message and of all its parts, together.
    max_header_bytes: int = 1024 * 1024
    max_attachments: int = 500


DEFAULT_LIMITS: Final = EmailLimits()


class BatchError(ValueError):
    """The ``mandrill_events`` value is not a JSON array."""


@dataclass(frozen=True, slots=True)
class Address:
    name: str | None
    address: str


@dataclass(frozen=True, slots=True)
class SpamRule:
    name: str | None
    score: float | None
    description: str | None


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    filename: str  # sanitised, never empty
    content_type: str
    # repr=False on payload-bearing fields: reprs end up in tracebacks and logs, and payload
    # content must never reach logs.
    content: bytes = field(repr=False)
    sha256: str  # hex digest of content
    size: int
    content_id: str | None  # without angle brackets
    inline: bool


@dataclass(frozen=True, slots=True)
class ParsedEmail:
    # As in the header (angle brackets kept), unfolded and stripped; None when missing or blank.
    message_id: str | None
    raw: bytes = field(repr=False)  # raw_msg encoded as UTF-8, exactly the bytes we parsed
    raw_sha256: str
    envelope_recipient: str | None  # msg["email"]: the address this route copy was posted for
    from_address: str | None
    from_name: str | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    subject: str | None
    sent_at: datetime | None  # Date header, tz-aware (UTC when the header has no zone)
    in_reply_to: str | None  # the first <id> of In-Reply-To (angle brackets kept)
    references: tuple[str, ...]  # the <id>s of References, in order (angle brackets kept)
    text_body: str | None = field(repr=False)
    html_body: str | None = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(repr=False)  # raw_msg's, in order, decoded
    tags: tuple[str, ...]
    spam_score: float | None
    spam_rules: tuple[SpamRule, ...]
    spf_result: str | None
    spf_detail: str | None
    dkim_signed: bool | None
    dkim_valid: bool | None
    mandrill_ts: datetime | None  # event "ts" as a UTC datetime
    attachments: tuple[ParsedAttachment, ...]
    # A body part or header declared a charset that is not a mail charset (punycode,
    # utf-7, unicode_escape...: worker.ingest.parsing.charsets); its text was read as unknown
    # 8-bit data.
    charset_refused: bool = False

    @property
    def dedup_key(self) -> str:
        """Identity of this email copy: inbound events carry no id of their own.

        Mandrill posts once per recipient route, so the envelope recipient is part of it.
        """
        recipient = (self.envelope_recipient or "").lower()
        return sha256_text(f"{self.message_id or ''}\x00{self.raw_sha256}\x00{recipient}")


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """A tracking (message) event, a sync event or an event of a kind we do not know."""

    kind: str
    occurred_at: datetime | None
    mandrill_id: str | None
    recipient: str | None
    payload: dict[str, Any] = field(
        repr=False
    )  # the event as received ({"value": ...} if not a dict)
    dedup_key: str
