"""The webhook gate: it admits a verified batch or refuses the request, and says why once.

Every webhook POST ends with one :class:`Verdict`, stored on ``request.state`` (see
:func:`verdict_of`): the metrics and the failure limit (:mod:`receiver.webhook_limit`)
read it instead of working it out again from headers or status codes.

Order matters, cheapest first, and nothing hostile costs more than the body itself:

1. before a byte of the body is read: the media type (415), a declared length over
   ``KAVE_MAX_BODY_BYTES`` (413) and a missing ``X-Mandrill-Signature`` (401). Mandrill
   signs every POST, so an unsigned one is refused without reading what it carries;
   then the client's share of requests in flight (429, :mod:`receiver.in_flight`);
2. the body, read with its cap (413 when a body without a length exceeds it), within
   the process's budget of buffered bytes (503) and at a minimum pace (408), see
   :mod:`receiver.body`;
3. the form is scanned, not decoded: more than ``KAVE_MAX_FORM_FIELDS`` pieces between
   '&', or a field name over :data:`MAX_NAME_BYTES`, is refused (400) before anything is
   built per field, so a body of a million ``&a`` is as cheap to refuse as one of eight;
   then the values are decoded piece by piece into the HMAC (401 on mismatch). The batch
   itself is never parsed as JSON here.

Step 3 is CPU work proportional to the body. Bodies up to :data:`INLINE_VERIFY_BYTES`
(Mandrill's usual 8-100 KB batches, a fraction of a millisecond) are verified on the event
loop, where a thread hop would cost more than the work; larger ones in a worker thread,
in pieces of at most 512 KB (hashlib releases the GIL on them; the rest gives it back at
least every switch interval), so other requests, the HEAD checks among them, keep their
latency while a 55 MB batch or a hostile body is verified.

Every refusal of something the client could have done right (:data:`COUNTED`) is counted
against the client by :mod:`receiver.webhook_limit`, which may turn it into 429. Not
counted: 503 (our configuration or our load), the in-flight 429 (already a limit), and
408 (its connection is closed, and a slow link is not a wrong request).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

import structlog
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from receiver.body import BodyPace, BodyTooSlowError, payload_too_large, read_body_limited
from receiver.in_flight import BufferFullError, ClientOverLimitError, Ticket
from receiver.webhook_limit import WebhookFailureLimit
from shared.formdata import (
    EVENTS_FIELD,
    FormDecodeError,
    FormField,
    TooManyFieldsError,
    form_fields,
    is_empty_batch,
    iter_value_utf8,
    last_field,
)
from shared.mandrill_signature import body_signature_matches
from shared.settings import MANDRILL_TEST_KEY, Settings
from shared.web.errors import (
    ApiError,
    BadRequestError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)

log = structlog.get_logger(__name__)

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
SIGNATURE_HEADER = "X-Mandrill-Signature"
# Bodies up to this size are verified on the event loop (see the module docstring).
INLINE_VERIFY_BYTES = 256 * 1024
# Mandrill's one field name is "mandrill_events"; a longer name than this is not a batch.
MAX_NAME_BYTES = 256
# Where the verdict is kept on request.state.
_STATE_KEY = "webhook_verdict"


class Verdict(StrEnum):
    """What the gate decided about one webhook POST."""

    OK = "ok"  # verified (an empty batch included): 200 once durable
    MISSING = "missing"  # no X-Mandrill-Signature: 401, body never read
    MISMATCH = "mismatch"  # no configured key and URL verify it: 401
    NOT_CONFIGURED = "not_configured"  # no key or URL configured: 503
    TOO_LARGE = "too_large"  # over KAVE_MAX_BODY_BYTES: 413
    BAD_MEDIA_TYPE = "bad_media_type"  # not form-encoded: 415
    BAD_FORM = "bad_form"  # not UTF-8, no mandrill_events, a long name, bad length: 400
    TOO_MANY_FIELDS = "too_many_fields"  # more than KAVE_MAX_FORM_FIELDS: 400
    LIMITED = "limited"  # a refusal past the client's failure limit: 429
    CLIENT_IN_FLIGHT = "client_in_flight"  # the client's requests in flight are at the cap: 429
    BUFFER_FULL = "buffer_full"  # the process's buffered bytes are at the cap: 503
    TOO_SLOW = "too_slow"  # the body stopped arriving or came too slowly: 408


# Refusals that count against the client: everything it could have done right.
COUNTED = frozenset(
    {
        Verdict.MISSING,
        Verdict.MISMATCH,
        Verdict.TOO_LARGE,
        Verdict.BAD_MEDIA_TYPE,
        Verdict.BAD_FORM,
        Verdict.TOO_MANY_FIELDS,
    }
)


class Refused(Exception):
    """The gate's refusal: the verdict and the error the client is answered with."""

    def __init__(self, verdict: Verdict, error: ApiError, urls_tried: list[str] | None = None):
        super().__init__(verdict.value)
        self.verdict = verdict
        self.error = error
        # For the log line of a signature mismatch: which URLs were tried, on how much.
        self.urls_tried = urls_tried
        self.body_length: int | None = None


@dataclass(frozen=True, slots=True)
class VerifiedBatch:
    body: bytes
    # Mandrill's URL-validation POST (or any empty batch): answer 200, store nothing.
    is_empty: bool


Judged = VerifiedBatch | Refused


def verdict_of(scope: Scope) -> Verdict | None:
    """The verdict the gate stored for this request, if the gate ran."""
    state = scope.get("state")
    verdict = state.get(_STATE_KEY) if isinstance(state, dict) else None
    return verdict if isinstance(verdict, Verdict) else None


def _record(request: Request, verdict: Verdict) -> None:
    setattr(request.state, _STATE_KEY, verdict)


# --- before the body is read ----------------------------------------------------------


def _check_before_reading(request: Request, settings: Settings) -> tuple[str, int | None]:
    """The signature header and the declared length (None without Content-Length), once
    media type, declared length and header are acceptable."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != FORM_MEDIA_TYPE:
        raise Refused(
            Verdict.BAD_MEDIA_TYPE,
            UnsupportedMediaTypeError(
                f"Content-Type must be {FORM_MEDIA_TYPE} with a mandrill_events field, "
                "as Mandrill sends it"
            ),
        )
    declared = request.headers.get("content-length")
    declared_size: int | None = None
    if declared is not None:
        try:
            declared_size = int(declared)
        except ValueError:
            raise Refused(
                Verdict.BAD_FORM, BadRequestError("Content-Length is not a number")
            ) from None
        if declared_size > settings.max_body_bytes:
            raise Refused(Verdict.TOO_LARGE, payload_too_large(settings.max_body_bytes))
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise Refused(Verdict.MISSING, UnauthorizedError(f"missing {SIGNATURE_HEADER} header"))
    return signature, declared_size


# --- the body (pure: runs on the loop or in a thread) -----------------------------------


def _bad_form(exc: FormDecodeError) -> Refused:
    if isinstance(exc, TooManyFieldsError):
        return Refused(
            Verdict.TOO_MANY_FIELDS,
            BadRequestError(f"{exc}; Mandrill sends one field, {EVENTS_FIELD}"),
        )
    return Refused(Verdict.BAD_FORM, BadRequestError(f"{exc}; send the batch form-encoded"))


def _check_values(body: bytes, fields: list[FormField]) -> None:
    """Decode every value once, for its errors only (the signature check decodes them as
    it goes; this is for the answer given without it)."""
    for field in fields:
        for _ in iter_value_utf8(body, field):
            pass


def verify_batch(
    body: bytes, signature: str, seen_url: Callable[[], str], settings: Settings
) -> VerifiedBatch:
    """The verified batch, or :class:`Refused`. Touches nothing but its arguments, so it
    can run in a worker thread. ``seen_url`` gives the URL as this request came in; it is
    asked only for an empty batch: building it costs ~5 us, on every request otherwise."""
    # The values are located here and decoded piece by piece by the signature check,
    # which feeds them to the HMAC as it goes: no decoded copy of the body is kept.
    try:
        fields = form_fields(
            body, max_fields=settings.max_form_fields, max_name_bytes=MAX_NAME_BYTES
        )
        events = last_field(fields, EVENTS_FIELD)
        if events is None:
            raise Refused(
                Verdict.BAD_FORM, BadRequestError(f"the form has no {EVENTS_FIELD} field")
            )
        urls = settings.mandrill_webhook_urls

        if is_empty_batch(body, events):
            # Mandrill validates a URL before the user has its key, signing with a fixed
            # test key; an empty batch stores nothing, so accepting it is harmless. The URL
            # may not be configured yet either, so the URL as seen here is tried too.
            candidate_urls = [*urls, seen_url()]
            keys = [MANDRILL_TEST_KEY, *settings.webhook_keys()]
            if body_signature_matches(signature, keys, candidate_urls, body, fields):
                return VerifiedBatch(body=body, is_empty=True)
            raise Refused(
                Verdict.MISMATCH,
                UnauthorizedError(f"{SIGNATURE_HEADER} does not match this batch"),
                candidate_urls,
            )

        if not urls or not settings.mandrill_webhook_keys:
            # Refuse to run without a secret: an empty key verifies anything anyone signs.
            _check_values(body, fields)
            raise Refused(
                Verdict.NOT_CONFIGURED,
                ServiceUnavailableError(
                    "webhook verification is not configured: set KAVE_MANDRILL_WEBHOOK_URLS "
                    "and KAVE_MANDRILL_WEBHOOK_KEYS"
                ),
            )
        matched = body_signature_matches(signature, settings.webhook_keys(), urls, body, fields)
    except FormDecodeError as exc:
        raise _bad_form(exc) from None
    if matched is None:
        raise Refused(
            Verdict.MISMATCH,
            UnauthorizedError(
                f"{SIGNATURE_HEADER} does not match: check that the URL registered in "
                "Mandrill is exactly one of KAVE_MANDRILL_WEBHOOK_URLS and that its key is "
                "configured"
            ),
            urls,
        )
    return VerifiedBatch(body=body, is_empty=False)


# --- the gate ---------------------------------------------------------------------------


async def _read_body(
    request: Request, settings: Settings, declared_size: int | None, ticket: Ticket
) -> bytes:
    pace: BodyPace = request.app.state.body_pace
    try:
        return await read_body_limited(
            request, settings.max_body_bytes, declared_size, ticket=ticket, pace=pace
        )
    except PayloadTooLargeError as exc:
        raise Refused(Verdict.TOO_LARGE, exc) from None
    except BodyTooSlowError as exc:
        log.warning(
            "webhook.body_too_slow",
            received=exc.received,
            declared=declared_size,
            client=ticket.client,
        )
        raise Refused(Verdict.TOO_SLOW, exc) from None
    except BufferFullError as exc:
        log.warning("webhook.buffer_full", declared=declared_size, client=ticket.client)
        raise Refused(Verdict.BUFFER_FULL, exc) from None


def _take_slot(ticket: Ticket) -> None:
    try:
        ticket.take_slot()
    except ClientOverLimitError as exc:
        log.warning("webhook.client_in_flight_limited", client=ticket.client)
        raise Refused(Verdict.CLIENT_IN_FLIGHT, exc) from None


def _check_body(
    body: bytes, signature: str, seen_url: Callable[[], str], settings: Settings
) -> Judged:
    try:
        return verify_batch(body, signature, seen_url, settings)
    except Refused as refused:
        return _detached(refused, len(body))


def _detached(refused: Refused, body_length: int | None = None) -> Judged:
    """The refusal without its tracebacks. They hold the frames that held the body, and
    an exception can outlive its request in a reference cycle until a full collection:
    hostile 8 MB bodies then piled up, one per refusal, until the collector ran."""
    refused.body_length = body_length
    for exc in (refused, refused.error):
        exc.__traceback__ = None
        exc.__context__ = None
    return refused


async def _judge(request: Request, settings: Settings, ticket: Ticket) -> Judged:
    """The verified batch, or the refusal (returned, never raised: see :func:`_detached`)."""
    try:
        signature, declared_size = _check_before_reading(request, settings)
        _take_slot(ticket)
        body = await _read_body(request, settings, declared_size, ticket)
    except Refused as refused:
        return _detached(refused)

    def seen_url() -> str:
        return str(request.url)

    if len(body) <= INLINE_VERIFY_BYTES:
        return _check_body(body, signature, seen_url, settings)
    return await run_in_threadpool(_check_body, body, signature, seen_url, settings)


async def verified_batch(request: Request, ticket: Ticket) -> VerifiedBatch:
    """The batch of this request, verified; raises the refusal's :class:`ApiError`.
    ``ticket`` holds the request's share of the process (:mod:`receiver.in_flight`); the
    caller closes it once the batch is no longer held."""
    judged = await _judge(request, request.app.state.settings, ticket)
    if isinstance(judged, VerifiedBatch):
        _record(request, Verdict.OK)
        return judged
    raise await _refuse(request, judged)


async def _refuse(request: Request, refused: Refused) -> ApiError:
    verdict, error = refused.verdict, refused.error
    if verdict in (Verdict.MISSING, Verdict.MISMATCH):
        _reject_log(request, refused)
    if verdict in COUNTED:
        limit: WebhookFailureLimit | None = getattr(request.app.state, "webhook_limit", None)
        over = await limit.count_failure(request) if limit is not None else None
        if over is not None:
            verdict, error = Verdict.LIMITED, over
    _record(request, verdict)
    return error


def redact_url(url: str) -> str:
    """A registered URL may carry basic-auth credentials or a token in its query; keep
    them out of logs (the query's names stay: they help to spot a mismatch)."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1])
    if parts.query:
        names = [pair.split("=", 1)[0] for pair in parts.query.split("&")]
        parts = parts._replace(query="&".join(f"{name}=***" for name in names))
    return urlunsplit(parts)


def _reject_log(request: Request, refused: Refused) -> None:
    # Which URLs were tried and how long the body was help an operator fix a mismatch;
    # the key, the signature and the body itself are never logged (nor read, when the
    # header is missing).
    log.warning(
        "webhook.signature_rejected",
        reason=refused.verdict.value,
        urls_tried=[redact_url(url) for url in refused.urls_tried or []],
        body_length=refused.body_length,
        client=request.client.host if request.client else None,
    )
