"""The webhook gate: a FastAPI dependency that yields a verified batch or refuses it.

Order matters: the cheap checks (media type, size) run before the body is read, and
the signature is checked before anything is stored. The batch itself is never parsed as
JSON here; only the form encoding is decoded, because the signature covers decoded values.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import structlog
from fastapi import Request

from receiver.body import read_body_limited
from receiver.errors import (
    BadRequestError,
    ServiceUnavailableError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from shared.formdata import (
    EVENTS_FIELD,
    FormDecodeError,
    FormField,
    form_fields,
    is_empty_batch,
    iter_value_utf8,
    last_field,
)
from shared.mandrill_signature import body_signature_matches
from shared.settings import MANDRILL_TEST_KEY, Settings

log = structlog.get_logger(__name__)

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
SIGNATURE_HEADER = "X-Mandrill-Signature"


@dataclass(frozen=True, slots=True)
class VerifiedBatch:
    body: bytes
    # Mandrill's URL-validation POST (or any empty batch): answer 200, store nothing.
    is_empty: bool


def _check_media_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != FORM_MEDIA_TYPE:
        raise UnsupportedMediaTypeError(
            f"Content-Type must be {FORM_MEDIA_TYPE} with a mandrill_events field, "
            "as Mandrill sends it"
        )


def _bad_form(exc: FormDecodeError) -> BadRequestError:
    return BadRequestError(f"{exc}; send the batch form-encoded")


def _check_values(body: bytes, fields: list[FormField]) -> None:
    """Decode every value once, for its errors only (the signature check decodes them as
    it goes; this is for the answers given before it)."""
    for field in fields:
        for _ in iter_value_utf8(body, field):
            pass


def verify_batch(request: Request, body: bytes, settings: Settings) -> VerifiedBatch:
    # The values are located here and decoded piece by piece by the signature check,
    # which feeds them to the HMAC as it goes: no decoded copy of the body is kept.
    try:
        fields = form_fields(body)
    except FormDecodeError as exc:
        raise _bad_form(exc) from None
    events = last_field(fields, EVENTS_FIELD)
    if events is None:
        raise BadRequestError(f"the form has no {EVENTS_FIELD} field")

    signature = request.headers.get(SIGNATURE_HEADER)
    urls = settings.mandrill_webhook_urls
    try:
        if not signature:
            _check_values(body, fields)
            _reject_log(request, body, urls, reason="missing")
            raise UnauthorizedError(f"missing {SIGNATURE_HEADER} header")

        if is_empty_batch(body, events):
            # Mandrill validates a URL before the user has its key, signing with a fixed
            # test key; an empty batch stores nothing, so accepting it is harmless. The URL
            # may not be configured yet either, so the URL as seen here is tried too.
            candidate_urls = [*urls, str(request.url)]
            keys = [MANDRILL_TEST_KEY, *settings.webhook_keys()]
            if body_signature_matches(signature, keys, candidate_urls, body, fields):
                return VerifiedBatch(body=body, is_empty=True)
            _reject_log(request, body, candidate_urls, reason="mismatch")
            raise UnauthorizedError(f"{SIGNATURE_HEADER} does not match this batch")

        if not urls or not settings.mandrill_webhook_keys:
            # Refuse to run without a secret: an empty key verifies anything anyone signs.
            _check_values(body, fields)
            raise ServiceUnavailableError(
                "webhook verification is not configured: set KAVE_MANDRILL_WEBHOOK_URLS and "
                "KAVE_MANDRILL_WEBHOOK_KEYS"
            )
        matched = body_signature_matches(signature, settings.webhook_keys(), urls, body, fields)
    except FormDecodeError as exc:
        raise _bad_form(exc) from None
    if matched is None:
        _reject_log(request, body, urls, reason="mismatch")
        raise UnauthorizedError(
            f"{SIGNATURE_HEADER} does not match: check that the URL registered in Mandrill "
            "is exactly one of KAVE_MANDRILL_WEBHOOK_URLS and that its key is configured"
        )
    return VerifiedBatch(body=body, is_empty=False)


def redact_userinfo(url: str) -> str:
    """A registered URL may carry basic-auth credentials; keep them out of logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def _reject_log(request: Request, body: bytes, urls: list[str], reason: str) -> None:
    # Which URLs were tried and how long the body was help an operator fix a mismatch;
    # the key, the signature and the body itself are never logged.
    log.warning(
        "webhook.signature_rejected",
        reason=reason,
        urls_tried=[redact_userinfo(url) for url in urls],
        body_length=len(body),
        client=request.client.host if request.client else None,
    )


async def verified_batch(request: Request) -> VerifiedBatch:
    settings: Settings = request.app.state.settings
    _check_media_type(request)
    body = await read_body_limited(request, settings.max_body_bytes)
    return verify_batch(request, body, settings)
