"""What the management API answers and accepts: response models with their OpenAPI
examples, the documented error responses, and the parameters the routes share."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

import structlog
from fastapi import Path, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from api.queries import Cursor, InvalidCursorError
from shared.objectstore import ObjectNotFoundError, ObjectStore
from shared.web.errors import ErrorBody, NotFoundError, ServiceUnavailableError

log = structlog.get_logger(__name__)

# PostgreSQL BIGINT: larger ids cannot exist, and sending them would be a database error.
MAX_ID = 2**63 - 1
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50

_T0 = "2026-11-26T09:14:03.120000Z"


def _example(value: dict[str, Any]) -> ConfigDict:
    return ConfigDict(from_attributes=True, json_schema_extra={"examples": [value]})


# --- errors -------------------------------------------------------------------------

_ERROR_EXAMPLES: dict[int, tuple[str, str]] = {
    401: (
        "No bearer token, or one that is invalid, expired or of a disabled user.",
        "invalid token (Signature has expired); get a new one from POST /api/v1/auth/token",
    ),
    404: ("No such resource.", "no email 42"),
    409: (
        "The resource is not in a state that allows this.",
        "dead letter 7 is discarded, not open; only open dead letters can be replayed",
    ),
    422: (
        "A parameter is invalid; `errors` names each field.",
        "invalid request: check query.limit",
    ),
    429: (
        "Rate limit reached; wait the seconds in `Retry-After`.",
        "too many API requests for this user (limit 600 per 60 s); retry in 12 s",
    ),
    503: (
        "A dependency (database, Redis, object store) is unreachable; retry later.",
        "the object store is unreachable; try again shortly",
    ),
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers of a route, with an example each."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        description, message = _ERROR_EXAMPLES[code]
        errors = [{"field": "query.limit", "message": "Input should be less than or equal to 100"}]
        example = {"status": "error", "message": message, "errors": errors if code == 422 else []}
        entry: dict[str, Any] = {
            "model": ErrorBody,
            "description": description,
            "content": {"application/json": {"example": example}},
        }
        if code == 429:
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "schema": {"type": "integer"},
                }
            }
        responses[code] = entry
    return responses


API_ERRORS = (401, 422, 429, 503)


# --- auth ---------------------------------------------------------------------------


class TokenOut(BaseModel):
    model_config = _example(
        {"access_token": "eyJhbGciOiJIUzI1NiIs…", "token_type": "bearer", "expires_in": 3600}
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="Seconds until the token expires.")


# --- emails -------------------------------------------------------------------------


class Address(BaseModel):
    name: str | None = None
    address: str | None = None


class SpamRule(BaseModel):
    name: str | None = None
    score: float | None = None
    description: str | None = None


_ATTACHMENT: dict[str, Any] = {
    "id": 11,
    "filename": "invoice.pdf",
    "content_type": "application/pdf",
    "size": 48213,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "inline": False,
    "content_id": None,
    "content_url": "/api/v1/attachments/11/content",
}


class AttachmentOut(BaseModel):
    model_config = _example(_ATTACHMENT)

    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    inline: bool
    content_id: str | None
    content_url: str = Field(description="Where to download the bytes.")


_EMAIL_SUMMARY: dict[str, Any] = {
    "id": 42,
    "message_id": "<CAF=abc123@mail.example.org>",
    "subject": "Invoice November",
    "from_address": "ana@example.org",
    "from_name": "Ana Lima",
    "to": [{"name": "Support", "address": "support@example.com"}],
    "envelope_recipient": "support@example.com",
    "received_at": _T0,
    "sent_at": "2026-11-26T09:13:58Z",
    "spam_score": 0.4,
    "spf_result": "pass",
    "dkim_valid": True,
    "attachment_count": 1,
    "delivery_id": "6c1e0d8a-2f4b-4c47-9a53-0b1f3c2e9d11",
}


class EmailSummary(BaseModel):
    model_config = _example(_EMAIL_SUMMARY)

    id: int
    message_id: str | None
    subject: str | None
    from_address: str | None
    from_name: str | None
    to: list[Address]
    envelope_recipient: str | None = Field(description="The address Mandrill delivered to.")
    received_at: datetime
    sent_at: datetime | None = Field(description="The Date header.")
    spam_score: float | None
    spf_result: str | None
    dkim_valid: bool | None
    attachment_count: int
    delivery_id: str


class EmailDetail(EmailSummary):
    model_config = _example(
        {
            **_EMAIL_SUMMARY,
            "cc": [],
            "bcc": [],
            "reply_to": [],
            "in_reply_to": None,
            "references": [],
            "text_body": "Hello,\n\nthe invoice is attached.\n",
            "html_body": None,
            "headers": [["From", "Ana Lima <ana@example.org>"], ["Subject", "Invoice November"]],
            "tags": [],
            "spam_rules": [{"name": "HTML_MESSAGE", "score": 0.0, "description": "HTML included"}],
            "spf_detail": "sender SPF authorized",
            "dkim_signed": True,
            "mandrill_ts": "2026-11-26T09:14:01Z",
            "raw_sha256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
            "raw_size": 66120,
            "raw_url": "/api/v1/emails/42/raw",
            "attachments": [_ATTACHMENT],
        }
    )

    cc: list[Address]
    bcc: list[Address]
    reply_to: list[Address]
    in_reply_to: str | None
    references: list[str]
    text_body: str | None
    html_body: str | None
    headers: list[tuple[str, str]] = Field(description="Every header, in order, decoded.")
    tags: list[str]
    spam_rules: list[SpamRule]
    spf_detail: str | None
    dkim_signed: bool | None
    mandrill_ts: datetime | None = Field(description="Mandrill's event timestamp.")
    raw_sha256: str
    raw_size: int
    raw_url: str = Field(description="Where to download the original message.")
    attachments: list[AttachmentOut]


class EmailPage(BaseModel):
    model_config = _example({"items": [_EMAIL_SUMMARY], "next_cursor": "WyIyMDI2LTExLTI2…"})

    items: list[EmailSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


# --- events -------------------------------------------------------------------------

_EVENT: dict[str, Any] = {
    "id": 9,
    "kind": "open",
    "occurred_at": "2026-11-26T09:20:11Z",
    "mandrill_id": "b1946ac92492d2347c6235b4d2611184",
    "recipient": "customer@example.net",
    "delivery_id": "6c1e0d8a-2f4b-4c47-9a53-0b1f3c2e9d11",
    "created_at": _T0,
    "payload": {"event": "open", "ts": 1795684811, "_id": "b1946ac92492d2347c6235b4d2611184"},
}


class EventOut(BaseModel):
    model_config = _example(_EVENT)

    id: int
    kind: str = Field(description="Mandrill's event name, or `blacklist`/`whitelist` for sync.")
    occurred_at: datetime | None
    mandrill_id: str | None
    recipient: str | None
    delivery_id: str
    created_at: datetime
    payload: dict[str, Any] = Field(description="The event as Mandrill sent it.")


class EventPage(BaseModel):
    model_config = _example({"items": [_EVENT], "next_cursor": None})

    items: list[EventOut]
    next_cursor: str | None


# --- deliveries ---------------------------------------------------------------------


class OutcomeCounts(BaseModel):
    stored: int = 0
    duplicate: int = 0
    failed: int = 0


_DELIVERY: dict[str, Any] = {
    "id": "6c1e0d8a-2f4b-4c47-9a53-0b1f3c2e9d11",
    "received_at": _T0,
    "status": "processed",
    "event_count": 2,
    "attempts": 1,
    "error": None,
    "handled_at": "2026-11-26T09:14:04Z",
    "body_size": 150233,
    "outcomes": {"stored": 1, "duplicate": 1, "failed": 0},
}


class DeliverySummary(BaseModel):
    model_config = _example(_DELIVERY)

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
    model_config = _example(
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
    model_config = _example({"items": [_DELIVERY], "next_cursor": None})

    items: list[DeliverySummary]
    next_cursor: str | None


# --- dead letters -------------------------------------------------------------------

_DEAD_LETTER: dict[str, Any] = {
    "id": 7,
    "delivery_id": "6c1e0d8a-2f4b-4c47-9a53-0b1f3c2e9d11",
    "event_index": 3,
    "kind": "inbound",
    "error_class": "MessageParseError",
    "message": "raw_msg is missing",
    "attempts": 1,
    "status": "open",
    "first_seen_at": _T0,
    "last_seen_at": _T0,
    "resolved_at": None,
}


class DeadLetterOut(BaseModel):
    model_config = _example(_DEAD_LETTER)

    id: int
    delivery_id: str
    event_index: int | None = Field(description="Null when the whole delivery failed.")
    kind: str | None
    error_class: str
    message: str
    attempts: int
    status: str = Field(description="`open`, `replayed` or `discarded`.")
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None


class DeadLetterDetail(DeadLetterOut):
    model_config = _example({**_DEAD_LETTER, "traceback": "Traceback (most recent call last):…"})

    traceback: str | None


class DeadLetterPage(BaseModel):
    model_config = _example({"items": [_DEAD_LETTER], "next_cursor": None})

    items: list[DeadLetterOut]
    next_cursor: str | None


class ReplayQueued(BaseModel):
    model_config = _example({"status": "queued", "dead_letter_id": 7, "task_id": "c0a8…"})

    status: Literal["queued"] = "queued"
    dead_letter_id: int
    task_id: str


# --- parameters shared by the routes ------------------------------------------------

# PostgreSQL text cannot hold NUL; refusing it here keeps it a 422 instead of a 500.
_NO_NUL = r"^[^\x00]*$"

IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="The resource's id.")]
PageSize = Annotated[
    int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Items per page, at most {MAX_PAGE_SIZE}.")
]
CursorParam = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]*$",
        description="`next_cursor` of the previous page; omit for the first (newest) page.",
    ),
]


def text_filter(description: str, max_length: int = 512) -> Any:
    return Query(min_length=1, max_length=max_length, pattern=_NO_NUL, description=description)


_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$"
)


def _rfc3339(value: object) -> object:
    # pydantic alone would also take a bare number as a Unix time, and no zone as local.
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("use an RFC 3339 date-time with a zone, e.g. 2026-11-26T09:00:00Z")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


def since_filter(what: str) -> Any:
    return Query(
        description=f"Only {what} at or after this instant (RFC 3339, e.g. 2026-11-26T09:00:00Z)."
    )


def until_filter(what: str) -> Any:
    return Query(
        description=f"Only {what} before this instant (RFC 3339, e.g. 2026-11-26T10:00:00Z)."
    )


def parse_cursor(value: str | None, id_type: type[int] | type[str]) -> Cursor | None:
    if not value:
        return None
    try:
        return Cursor.decode(value, id_type)
    except InvalidCursorError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": f"{exc}: pass next_cursor unchanged"}]
        ) from None


# --- downloads ----------------------------------------------------------------------

_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


def safe_media_type(value: str | None) -> str:
    """The stored type without parameters when it is well-formed; octet-stream otherwise."""
    media_type = (value or "").split(";", 1)[0].strip().lower()
    return media_type if _MEDIA_TYPE.match(media_type) else "application/octet-stream"


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name in RFC 5987 form."""
    fallback = "".join(
        char if 32 <= ord(char) < 127 and char not in '"\\;' else "_" for char in filename
    )
    return f"attachment; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{quote(filename)}"


def download_headers(filename: str, media_type: str, sha256: str) -> dict[str, str]:
    """Bytes a browser must save, never render: ``attachment`` + ``nosniff`` + sandbox."""
    return {
        # Set as is: Starlette would append "charset=utf-8" to text types, which is a
        # guess about bytes it has not read.
        "Content-Type": media_type,
        "Content-Disposition": content_disposition(filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "ETag": f'"{sha256}"',
        "Cache-Control": "private, max-age=0",
    }


def stored_download(
    store: ObjectStore,
    key: str,
    sha256: str,
    *,
    size: int,
    filename: str,
    media_type: str,
    what: str,
) -> Response:
    """An object-store object streamed as a ``download``, never held whole in memory.

    The object is opened before the response starts, so a missing object or an
    unreachable store still gets a proper 404 or 503. Its bytes are checked against the
    sha256: an object that fits in one chunk is checked before anything is sent (503 if
    altered); a larger one is checked as it passes, and a mismatch (impossible unless
    the object was altered in the store) is logged. ``what`` names it for messages.
    """
    chunks = store.stream(key)
    try:
        first = next(chunks, b"")
        second = next(chunks, None)
    except ObjectNotFoundError:
        raise NotFoundError(f"{what} is missing from the object store") from None
    except Exception as exc:  # boto3/botocore or OS errors: the store, not the request
        log.error("objectstore.read_failed", key=key, error_type=type(exc).__name__)
        raise ServiceUnavailableError(
            "the object store is unreachable; try again shortly"
        ) from None
    if second is None and hashlib.sha256(first).hexdigest() != sha256:
        log.error("objectstore.digest_mismatch", key=key)
        raise ServiceUnavailableError(f"{what} does not match its sha256 in the object store")

    def checked() -> Iterator[bytes]:
        digest = hashlib.sha256(first)
        yield first
        if second is None:
            return
        digest.update(second)
        yield second
        for chunk in chunks:
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != sha256:
            log.error("objectstore.digest_mismatch", key=key)

    headers = {**download_headers(filename, media_type, sha256), "Content-Length": str(size)}
    return StreamingResponse(checked(), headers=headers)
