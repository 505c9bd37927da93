"""Pure parsing of Mandrill webhook events into frozen dataclasses.

Role: turn one decoded event (an element of the ``mandrill_events`` JSON array) into what the
worker stores: :class:`ParsedEmail` for inbound mail, :class:`ParsedEvent` for tracking events,
sync events and kinds we do not know yet. This module does no I/O (no database, object store,
queue or network; an import-linter contract keeps it so), which makes every function
deterministic: the same event always gives the same result or the same
:class:`PermanentEventError`, so callers can dead-letter that error without retrying.

Principles, from what Mandrill actually sends:

- ``raw_msg`` is the source of truth for what is inside the message (addresses, subject, date,
  ids, headers). Mandrill's convenience fields are fallbacks only: it mis-splits ``to``, and in
  the fixtures its fields sometimes disagree with ``raw_msg``.
- Attachments come from Mandrill's ``attachments`` and ``images`` first, then from every MIME
  part Mandrill did not deliver, so nothing the sender attached is lost.
- One malformed header, verdict or tag never fails an email. Only an event whose shape makes the
  email itself unrecoverable raises :class:`PermanentEventError`, whose message names fields and
  JSON types but never payload content (it is stored and shown to operators).
- Every ``str`` produced is valid UTF-8 without NUL characters, so it fits a PostgreSQL text
  column as it is. (``ParsedEvent.payload`` is the exception: it is the event as received.)
"""

from __future__ import annotations

import binascii
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.feedparser import BytesFeedParser
from email.header import decode_header, make_header
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.policy import Policy
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any, Final, TypeVar

from worker import charsets, columns, mime_shape
from worker.columns import storable_text
from worker.interrupts import INTERRUPTS

__all__ = [
    "DEFAULT_LIMITS",
    "Address",
    "BatchError",
    "EmailLimits",
    "LimitExceededError",
    "ParsedAttachment",
    "ParsedEmail",
    "ParsedEvent",
    "PermanentEventError",
    "SpamRule",
    "check_mime_shape",
    "event_kind",
    "parse_batch",
    "parse_event",
    "parse_inbound",
    "sanitize_filename",
]

# Long enough for any real extension ("tar.gz" is handled as "gz"), short enough that a name
# made of one huge "extension" is truncated as a whole instead.
_MAX_EXTENSION_CHARS: Final = 16
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
_BODY_TYPES: Final = frozenset({"text/plain", "text/html"})
_MESSAGE_ID_TOKEN: Final = re.compile(r"<[^<>\s]+>")
_LEADING_DOTS_AND_BLANKS: Final = re.compile(r"^[.\s]+")

_T = TypeVar("_T")
# The MIME parser is fed pieces of this many bytes (see _parse_mime).
_FEED_BYTES: Final = 64 * 1024
# Base64 parts of at least this many characters are decoded in pieces of about the
# second size (see _large_base64_part).
_PIECEWISE_BASE64_CHARS: Final = 1024 * 1024
_BASE64_PIECE_CHARS: Final = 1024 * 1024


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
    # utf-7, unicode_escape...: worker.charsets); its text was read as unknown 8-bit data.
    charset_refused: bool = False

    @property
    def dedup_key(self) -> str:
        """Identity of this email copy: inbound events carry no id of their own.

        Mandrill posts once per recipient route, so the envelope recipient is part of it.
        """
        recipient = (self.envelope_recipient or "").lower()
        return _sha256_text(f"{self.message_id or ''}\x00{self.raw_sha256}\x00{recipient}")


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


class _RememberedHeaders(HeaderRegistry):
    """``policy.default``'s header registry, remembering its recent parses.

    The policy parses a header each time it is read, and reading a message reads the
    same few many times (the parser and every get_content_type, get_filename or
    get_content_charset re-parse a part's Content-Type): 46 parses per 100 KB email,
    a fifth of the worker's CPU. A header is a function of its name and value, and the
    header objects are immutable (str subclasses whose parse tree nothing changes once
    built), so a parse can be handed out again. Parse errors are not remembered (they
    are raised again). Only short headers are kept (the repeated ones are: Content-Type,
    Content-Transfer-Encoding, Content-Disposition), name and value together since a
    name can be as long as the header limit, and the memo is emptied when full, so it
    holds at most a few MB of parse trees.
    """

    def __init__(
        self,
        memo: dict[tuple[str, str], BaseHeader] | None = None,
        budget: _HeaderBudget | None = None,
    ) -> None:
        super().__init__()
        self._parsed: dict[tuple[str, str], BaseHeader] = {} if memo is None else memo
        self._budget = budget

    def for_email(self) -> _RememberedHeaders:
        """The registry of one email's parse: this one's memo, and a budget of characters
        of long (not remembered) values, since a part's accessors parse its Content-Type
        again and again: past the budget a long value is read only as far as a short one,
        and that parse is remembered."""
        return _RememberedHeaders(self._parsed, _HeaderBudget(_LONG_HEADER_BUDGET))

    def __call__(self, name: str, value: str) -> BaseHeader:
        key = (name, value)
        header = self._parsed.get(key)
        if header is None:
            remembered = len(name) + len(value) <= _REMEMBERED_CHARS
            if not remembered and self._budget and not self._budget.take(len(value)):
                return self(name, _cut_at_separator(value, _REMEMBERED_CHARS - len(name)))
            # Every header the policy parses passes here: the one place where a refused
            # charset of an encoded word or parameter is kept from its codec.
            header = super().__call__(name, _parseable_header(value))
            if len(name) + len(value) <= _REMEMBERED_CHARS:
                if len(self._parsed) >= _REMEMBERED_HEADERS:
                    self._parsed.clear()
                self._parsed[key] = header
        return header


_REMEMBERED_HEADERS: Final = 512
_REMEMBERED_CHARS: Final = 256
# The policy's header parser costs microseconds a character, more for long values (each
# token it takes copies the rest of the value: quadratic), and far more in address lists
# and parameters. So it parses no value longer than _MAX_PARSED_HEADER_CHARS: the factory
# cuts such a value at its last separator (what the MIME parser and the part accessors
# read of Content-Type and Content-Disposition, type, boundary, charset and name, comes
# first); the header list decodes it with the stdlib's older decoder (up to
# _MAX_LEGACY_DECODED_CHARS, beyond which it is kept as sent) and the address fields
# read it with the older, linear address parser. And per email at most
# _PARSED_HEADER_BUDGET characters of header values are parsed by it for the header list
# and the addresses (shortest first; the rest take the same older paths).
_MAX_PARSED_HEADER_CHARS: Final = 4 * 1024
_MAX_LEGACY_DECODED_CHARS: Final = 64 * 1024
_PARSED_HEADER_BUDGET: Final = 32 * 1024
_LONG_HEADER_BUDGET: Final = 32 * 1024
# Display names longer than a header line are kept as sent: decode_header is quadratic
# in the number of encoded words.
_MAX_DECODED_NAME_CHARS: Final = 998
_HEADERS: Final = _RememberedHeaders()
_POLICY: Final = policy.default.clone(header_factory=_HEADERS)


def _parseable_header(value: str) -> str:
    """What the policy parses of a header value: refused charsets neutralised
    (worker.charsets), and cut at a separator when longer than _MAX_PARSED_HEADER_CHARS."""
    return _cut_at_separator(charsets.neutralize_header(value)[0], _MAX_PARSED_HEADER_CHARS)


def _cut_at_separator(value: str, limit: int) -> str:
    """``value`` if at most ``limit`` long, else cut at its last separator before it."""
    if len(value) <= limit:
        return value
    head = value[: max(limit, 0)]
    cut = max(head.rfind(separator) for separator in (",", ";", " ", "\t"))
    return head[:cut] if cut > 0 else head


class _HeaderBudget:
    """The characters of header values one email may still have decoded by the policy."""

    def __init__(self, chars: int = _PARSED_HEADER_BUDGET) -> None:
        self.chars = chars

    def take(self, chars: int) -> bool:
        if chars > self.chars:
            return False
        self.chars -= chars
        return True


# --------------------------------------------------------------------------- public functions


def parse_batch(mandrill_events: str) -> list[Any]:
    """Decode the ``mandrill_events`` form value into its list of events."""
    try:
        value = json.loads(mandrill_events)
    except json.JSONDecodeError as exc:
        # exc.msg and the position describe the syntax error without quoting the payload.
        raise BatchError(
            f"mandrill_events is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise BatchError(f"mandrill_events could not be decoded ({type(exc).__name__})") from exc
    if not isinstance(value, list):
        raise BatchError(f"mandrill_events is not a JSON array (got {_json_type(value)})")
    return value


def event_kind(event: Any) -> str:
    """Name the kind of an event: "inbound", "open", ..., "sync.blacklist" or "unknown"."""
    if not isinstance(event, dict):
        return "unknown"
    if "event" in event:
        # Message events (and inbound) say what they are; anything else is kept as it is, so
        # new Mandrill kinds are stored instead of rejected.
        return _kind_text(event["event"]) or "unknown"
    # Sync events have no "event" key but a "type" (blacklist / whitelist).
    sync_type = _kind_text(event.get("type"))
    return f"sync.{sync_type}"[: columns.EVENT_KIND_CHARS] if sync_type else "unknown"


def parse_event(event: Any) -> ParsedEvent:
    """Parse a non-inbound event; never raises for any JSON value."""
    kind = event_kind(event)
    payload: dict[str, Any] = event if isinstance(event, dict) else {"value": event}
    mandrill_id: str | None = None
    recipient: str | None = None
    if kind.startswith("sync."):
        recipient = _sync_recipient(payload)
    else:
        msg = payload.get("msg")
        if isinstance(msg, dict):
            mandrill_id = _opt_nonblank(msg.get("_id"))
            recipient = _opt_nonblank(msg.get("email"))
    return ParsedEvent(
        kind=kind,
        occurred_at=_timestamp(payload.get("ts")),
        mandrill_id=mandrill_id,
        recipient=recipient,
        payload=payload,
        dedup_key=_event_digest(event),
    )


def parse_inbound(event: Any, limits: EmailLimits = DEFAULT_LIMITS) -> ParsedEmail:
    """Parse an inbound event into a :class:`ParsedEmail`.

    Raises :class:`PermanentEventError` when the event cannot be turned into an email
    (:class:`LimitExceededError` when it is over one of ``limits``). Any other exception
    is a bug here; the caller (worker.ingest) turns it into a permanent failure that
    names the failing line, since the same input would fail the same way.
    """
    msg, raw_msg = _inbound_shape(event)
    return _parse_inbound(event, msg, raw_msg, limits)


def sanitize_filename(name: object, fallback: str) -> str:
    """Make a sender-chosen attachment name safe to store and show, or return ``fallback``."""
    return _clean_filename(name) or fallback


# --------------------------------------------------------------------------- inbound


def _inbound_shape(event: Any) -> tuple[dict[str, Any], str]:
    if not isinstance(event, dict):
        raise PermanentEventError(f"event is not a JSON object (got {_json_type(event)})")
    if "msg" not in event or event["msg"] is None:
        raise PermanentEventError("inbound event has no msg")
    msg = event["msg"]
    if not isinstance(msg, dict):
        raise PermanentEventError(f"msg is not a JSON object (got {_json_type(msg)})")
    raw_msg = msg.get("raw_msg")
    if not isinstance(raw_msg, str):
        raise PermanentEventError(f"msg.raw_msg is not a string (got {_json_type(raw_msg)})")
    return msg, raw_msg


def _parse_inbound(
    event: dict[str, Any], msg: dict[str, Any], raw_msg: str, limits: EmailLimits
) -> ParsedEmail:
    # surrogatepass: a JSON "\ud800" escape is legal JSON but not encodable as UTF-8; keeping
    # it losslessly beats failing the email. For any valid string this is plain UTF-8.
    raw = raw_msg.encode("utf-8", "surrogatepass")
    # Cheap checks first: the full parse of a parts bomb alone costs seconds.
    check_mime_shape(raw, limits)
    _check_entry_count(msg, limits)
    message = _parse_mime(raw, limits.max_mime_parts)
    parts = _mime_parts(message, limits)
    budget = _HeaderBudget()
    from_address, from_name = _sender(message, msg, budget)
    spam_score, spam_rules = _spam_report(msg.get("spam_report"))
    spf_result, spf_detail = _spf(msg.get("spf"))
    dkim_signed, dkim_valid = _dkim(msg.get("dkim"))
    subject = _header(message, "Subject")
    return ParsedEmail(
        message_id=_message_id(_id_header(message, msg, "Message-ID")),
        raw=raw,
        raw_sha256=_sha256_bytes(raw),
        envelope_recipient=_opt_nonblank(msg.get("email")),
        from_address=from_address,
        from_name=from_name,
        to=_addresses(message, "To", budget),
        cc=_addresses(message, "Cc", budget),
        bcc=_addresses(message, "Bcc", budget),
        reply_to=_addresses(message, "Reply-To", budget),
        subject=subject if subject is not None else _opt_str(msg.get("subject")),
        sent_at=_date(_id_header(message, msg, "Date")),
        in_reply_to=_first_message_id(_id_header(message, msg, "In-Reply-To")),
        references=_message_ids(_id_header(message, msg, "References")),
        text_body=_body(msg.get("text"), parts, "text/plain"),
        html_body=_body(msg.get("html"), parts, "text/html"),
        headers=_all_headers(message, budget),
        tags=_tags(msg.get("tags")),
        spam_score=spam_score,
        spam_rules=spam_rules,
        spf_result=spf_result,
        spf_detail=spf_detail,
        dkim_signed=dkim_signed,
        dkim_valid=dkim_valid,
        mandrill_ts=_timestamp(event.get("ts")),
        attachments=_attachments(msg, parts, limits),
        charset_refused=any(part.charset_refused for part in parts)
        or _headers_refuse_charset(message),
    )


def _parse_mime(raw: bytes, max_entities: int) -> Message:
    try:
        # Bytes, not the str: raw_msg was transcoded to UTF-8 while its MIME headers may still
        # declare another charset, and only the bytes parser keeps 8-bit content recoverable.
        # Fed in pieces, as BytesParser.parsebytes feeds the parser, but without its
        # whole-message copies: parsebytes decodes the bytes into a str and reads that
        # through a StringIO (4 bytes per character), 5x the message at once (120 MB for
        # a 24 MB email). The pieces are decoded as it decodes the whole (ASCII with
        # surrogateescape, byte by byte), and the parser does not depend on where they
        # are cut; the result is the same message.
        parser = BytesFeedParser(
            policy=_POLICY.clone(
                message_factory=_Entities(max_entities), header_factory=_HEADERS.for_email()
            )
        )
        view = memoryview(raw)
        for start in range(0, len(raw), _FEED_BYTES):
            parser.feed(view[start : start + _FEED_BYTES].tobytes())
        return parser.close()
    except PermanentEventError:
        raise  # over the parts cap (_Entities)
    except INTERRUPTS:
        raise
    except Exception as exc:
        # The parser registers defects instead of raising; what remains (deep nesting hitting
        # the recursion limit) will fail the same way every time.
        raise PermanentEventError(
            f"msg.raw_msg could not be parsed as MIME ({type(exc).__name__})"
        ) from exc


class _Entities:
    """The parser's message factory: it counts the entities the parser builds (the
    message, every part, every attached message) and stops the parse at the first one
    over the cap. The pre-scan (:func:`check_mime_shape`) refuses most bombs from the raw
    lines; this refuses, before the tree is built in full, what the scan does not read
    as the parser does (RFC 2231-encoded boundaries, lines ended by a lone CR)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def __call__(self, policy: Policy[EmailMessage]) -> EmailMessage:
        self.count += 1
        if self.count > self.limit:
            raise LimitExceededError(
                "mime_parts", self.count, self.limit, "MIME parts", at_least=True
            )
        return EmailMessage(policy=policy)


def _sender(
    message: Message, msg: Mapping[str, Any], budget: _HeaderBudget
) -> tuple[str | None, str | None]:
    found = _addresses(message, "From", budget)
    if found:
        return found[0].address, found[0].name
    return _opt_nonblank(msg.get("from_email")), _opt_nonblank(msg.get("from_name"))


def _body(mandrill_value: object, parts: list[_MimePart], content_type: str) -> str | None:
    if isinstance(mandrill_value, str):
        return storable_text(mandrill_value)
    # Missing or null in the payload: the first matching body part of raw_msg. Parts inside a
    # forwarded message are that message's body, not this one's.
    for part in parts:
        if part.content_type == content_type and not part.nested and not _is_attached(part):
            return part.text
    return None


# --------------------------------------------------------------------------- headers


def _raw_headers(message: Message) -> list[tuple[str, str]]:
    # raw_items() hands back the stored strings without parsing them, so it cannot trip over
    # a malformed header the way message[name] can.
    try:
        return [(str(name), str(value)) for name, value in message.raw_items()]
    except INTERRUPTS:
        raise
    except Exception:
        return []


def _raw_values(message: Message, name: str) -> list[str]:
    wanted = name.lower()
    return [value for key, value in _raw_headers(message) if key.lower() == wanted]


def _raw_header(message: Message, name: str) -> str | None:
    """The first ``name`` header, unfolded and undecoded; None when absent."""
    values = _raw_values(message, name)
    return storable_text(_unfold(values[0])).strip() if values else None


def _id_header(message: Message, msg: Mapping[str, Any], name: str) -> str | None:
    """An undecoded header of raw_msg, else the same header in Mandrill's ``headers`` object.

    Only for ids and the date, which are plain ASCII tokens: a copy of the message whose
    raw_msg lost them (inbound_reply.json has In-Reply-To/References only in ``headers``)
    still threads. Addresses never come from there.
    """
    raw = _raw_header(message, name)
    return raw if raw is not None else _mandrill_header(msg.get("headers"), name)


def _mandrill_header(headers: object, name: str) -> str | None:
    # "headers" can be [] instead of {} (PHP), and repeated headers arrive as a list.
    if not isinstance(headers, dict):
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() != wanted:
            continue
        first = value[0] if isinstance(value, list) and value else value
        return _opt_nonblank(_unfold(first)) if isinstance(first, str) else None
    return None


def _header(message: Message, name: str) -> str | None:
    """The first ``name`` header, decoded (RFC 2047); None when absent. Never raises."""
    values = _raw_values(message, name)
    return _decoded_header(name, values[0]) if values else None


def _decoded_header(name: str, raw: str) -> str:
    if len(raw) > _MAX_PARSED_HEADER_CHARS:
        return _legacy_decoded(raw)
    try:
        return storable_text(str(_POLICY.header_fetch_parse(name, raw)))
    except INTERRUPTS:
        raise
    except Exception:
        # The stdlib raises on some malformed headers; the undecoded text is better than none.
        return storable_text(_unfold(raw))


def _all_headers(message: Message, budget: _HeaderBudget) -> tuple[tuple[str, str], ...]:
    pairs = _raw_headers(message)
    values = [""] * len(pairs)
    # Shortest first, so that a few huge values cannot leave the Subject undecoded.
    for index in sorted(range(len(pairs)), key=lambda index: len(pairs[index][1])):
        name, raw = pairs[index]
        values[index] = (
            _decoded_header(name, raw) if budget.take(len(raw)) else _legacy_decoded(raw)
        )
    return tuple(
        (storable_text(name), value) for (name, _), value in zip(pairs, values, strict=True)
    )


def _unfold(value: str) -> str:
    # Folding is CRLF + whitespace; dropping the line breaks unfolds it (RFC 5322 2.2.3).
    return value.replace("\r", "").replace("\n", "")


def _addresses(message: Message, name: str, budget: _HeaderBudget) -> tuple[Address, ...]:
    raws = _raw_values(message, name)
    if not raws:
        return ()
    longest = max(len(raw) for raw in raws)
    if longest > _MAX_PARSED_HEADER_CHARS or not budget.take(sum(len(raw) for raw in raws)):
        return _legacy_addresses(raws)
    try:
        return _policy_addresses(name, raws)
    except INTERRUPTS:
        raise
    except Exception:
        # The policy's parser raises on some malformed lists (IndexError, AttributeError);
        # the older, forgiving parser still gets the well-formed addresses out.
        return _legacy_addresses(raws)


def _policy_addresses(name: str, raws: list[str]) -> tuple[Address, ...]:
    found: list[Address] = []
    for raw in raws:
        header: Any = _POLICY.header_fetch_parse(name, raw)
        for item in header.addresses:
            address = _address(item.display_name, item.addr_spec)
            if address is not None:
                found.append(address)
    return tuple(found)


def _legacy_addresses(raws: list[str]) -> tuple[Address, ...]:
    found: list[Address] = []
    for display_name, addr_spec in getaddresses([_unfold(raw) for raw in raws]):
        address = _address(_decode_words(display_name), addr_spec)
        if address is not None:
            found.append(address)
    return tuple(found)


def _legacy_decoded(raw: str) -> str:
    """A header value decoded by the stdlib's older decoder, or as sent when too long."""
    text = _unfold(raw).strip()  # as the policy gives a value: without outer blanks
    if len(text) <= _MAX_LEGACY_DECODED_CHARS:
        text = _decode_words(text, _MAX_LEGACY_DECODED_CHARS)
    return storable_text(text)


def _decode_words(text: str, max_chars: int = _MAX_DECODED_NAME_CHARS) -> str:
    if len(text) > max_chars:
        return text
    try:
        return str(make_header(decode_header(charsets.neutralize_header(text)[0])))
    except INTERRUPTS:
        raise
    except Exception:
        return text


def _address(display_name: object, addr_spec: object) -> Address | None:
    address = _opt_nonblank(addr_spec)
    if address is None:
        return None
    return Address(name=_opt_nonblank(display_name), address=address)


def _date(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        parsed = parsedate_to_datetime(raw)
    except INTERRUPTS:
        raise
    except Exception:
        return None
    # A "-0000" zone (or none) means "unknown"; we read it as UTC so comparisons work.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _message_id(raw: str | None) -> str | None:
    return raw[: columns.MESSAGE_ID_CHARS] if raw else None


def _message_ids(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    tokens: list[str] = _MESSAGE_ID_TOKEN.findall(raw) or raw.split()
    # dict.fromkeys: drop repeats, keep the thread order.
    return tuple(dict.fromkeys(found[: columns.MESSAGE_ID_CHARS] for found in tokens))


def _first_message_id(raw: str | None) -> str | None:
    ids = _message_ids(raw)
    return ids[0] if ids else None


# --------------------------------------------------------------------------- verdicts, tags


def _spam_report(value: object) -> tuple[float | None, tuple[SpamRule, ...]]:
    if not isinstance(value, dict):
        return None, ()
    rules = value.get("matched_rules")
    parsed = tuple(
        SpamRule(
            name=_opt_str(rule.get("name")),
            score=_opt_float(rule.get("score")),
            description=_opt_str(rule.get("description")),
        )
        for rule in (rules if isinstance(rules, list) else [])
        if isinstance(rule, dict)
    )
    return _opt_float(value.get("score")), parsed


def _spf(value: object) -> tuple[str | None, str | None]:
    if not isinstance(value, dict):
        return None, None
    return _opt_str(value.get("result")), _opt_str(value.get("detail"))


def _dkim(value: object) -> tuple[bool | None, bool | None]:
    if not isinstance(value, dict):
        return None, None
    return _opt_bool(value.get("signed")), _opt_bool(value.get("valid"))


def _tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(storable_text(tag) for tag in value if isinstance(tag, str))


# --------------------------------------------------------------------------- MIME parts


@dataclass(frozen=True, slots=True)
class _MimePart:
    """One leaf part of raw_msg, with everything read from it once and guarded."""

    filename: str | None  # as declared (decoded), not sanitised
    content_type: str
    disposition: str | None
    content_id: str | None  # without angle brackets
    data: bytes = field(repr=False)
    sha256: str
    nested: bool  # inside a message/* part (a forwarded or bounced message)
    text: str | None = field(repr=False)  # decoded text for text/plain and text/html parts
    charset_refused: bool = False  # the text's declared charset is not a mail charset


def _mime_parts(root: Message, limits: EmailLimits = DEFAULT_LIMITS) -> list[_MimePart]:
    """Every leaf part in document order, walking into multiparts and attached messages.

    An explicit stack instead of Message.walk(): same order, no recursion limit. And not
    iter_attachments(), which misses the parts of forwarded mail. The nesting cap is
    checked again here on the parsed tree (the pre-scan of :func:`check_mime_shape`
    reads raw lines and may miss exotic structures; the parts cap is kept by the
    parser's factory, :class:`_Entities`), still before any part is decoded.
    """
    parts: list[_MimePart] = []
    leaves: list[tuple[Message, bool]] = []
    stack: list[tuple[Message, bool, int]] = [(root, False, 0)]
    while stack:
        part, nested, depth = stack.pop()
        if depth > limits.max_nesting_depth:
            raise LimitExceededError(
                "nesting_depth", depth, limits.max_nesting_depth, "levels of MIME nesting"
            )
        if part.is_multipart():
            children = part.get_payload()
            inside = nested or _guard(part.get_content_maintype, "") == "message"
            if isinstance(children, list):
                stack.extend(
                    (child, inside, depth + 1)
                    for child in reversed(children)
                    if isinstance(child, Message)
                )
            continue
        leaves.append((part, nested))
    for part, nested in leaves:
        parts.append(_mime_part(part, nested))
    return parts


def _mime_part(part: Message, nested: bool) -> _MimePart:
    content_type = _guard(part.get_content_type, DEFAULT_CONTENT_TYPE)[: columns.CONTENT_TYPE_CHARS]
    data = _part_bytes(part)
    filename = _guard(part.get_filename, None)
    text, refused = _part_text(part, data) if content_type in _BODY_TYPES else (None, False)
    return _MimePart(
        filename=storable_text(filename) if isinstance(filename, str) else None,
        content_type=content_type,
        disposition=_guard(part.get_content_disposition, None),
        content_id=_content_id(_raw_header(part, "Content-ID")),
        data=data,
        sha256=_sha256_bytes(data),
        nested=nested,
        text=text,
        charset_refused=refused,
    )


def _part_bytes(part: Message) -> bytes:
    large = _guard(lambda: _large_base64_part(part), None)
    if large is not None:
        return large
    payload = _guard(lambda: part.get_payload(decode=True), None)
    if isinstance(payload, bytes):
        return payload
    undecoded = part.get_payload()
    if isinstance(undecoded, str):
        # The bytes parser stores undecodable bytes as surrogate escapes; this restores them.
        return _guard(lambda: undecoded.encode("utf-8", "surrogateescape"), b"")
    return b""


def _large_base64_part(part: Message) -> bytes | None:
    """A large base64 part's bytes, decoded in pieces; None leaves it to get_payload.

    get_payload(decode=True) copies the payload to bytes, splits it into lines and joins
    them, then decodes: three transient copies of a 24 MB attachment at the worker's
    memory peak. :func:`decode_base64_lines` gives the same bytes piece by piece.
    """
    cte = str(part.get("content-transfer-encoding", "")).lower()  # as get_payload reads it
    if cte != "base64":
        return None
    payload = part.get_payload()
    if not isinstance(payload, str) or len(payload) < _PIECEWISE_BASE64_CHARS:
        return None
    return decode_base64_lines(payload)


def decode_base64_lines(payload: str, piece_chars: int = _BASE64_PIECE_CHARS) -> bytes | None:
    """What ``get_payload(decode=True)`` gives for a base64 part whose payload is
    ``payload``, decoded in pieces of about ``piece_chars``; None where it might not be.

    get_payload decodes the payload without its line breaks (\\r, \\n) strictly
    (``b64decode(validate=True)``) when its length is a multiple of 4, and otherwise
    repairs it, recording defects. Pieces cut after a line break, each a whole number
    of quads with padding only in the last, decode strictly to the same bytes as the
    whole: then those are returned. Anything else (non-ASCII, odd lengths, stray
    characters, padding inside) returns None, for get_payload to handle as before.
    """
    if not payload.isascii():
        return None
    pieces: list[bytes] = []
    start, size = 0, len(payload)
    while start < size:
        cut = payload.find("\n", start + piece_chars)
        stop = size if cut < 0 else cut + 1
        compact = payload[start:stop].replace("\r", "").replace("\n", "")
        if len(compact) % 4 or (stop < size and "=" in compact):
            return None
        try:
            pieces.append(binascii.a2b_base64(compact, strict_mode=True))
        except ValueError:
            return None
        start = stop
    return b"".join(pieces)


def _part_text(part: Message, data: bytes) -> tuple[str, bool]:
    """The text of a body part, and whether its declared charset was refused."""
    charset = _guard(part.get_content_charset, None)
    refused = charsets.is_refused(charset)
    encoding = (_raw_header(part, "Content-Transfer-Encoding") or "").lower()
    if encoding not in ("base64", "quoted-printable"):
        # Unencoded 8-bit text was transcoded to UTF-8 by Mandrill whatever charset the part
        # still declares, so UTF-8 is the truth when it decodes.
        try:
            return storable_text(data.decode("utf-8")), refused
        except UnicodeDecodeError:
            pass
    # Only a mail charset's codec (worker.charsets): anything else is read as UTF-8.
    text, refused = charsets.decode_text(data, charset)
    return storable_text(text), refused


def _headers_refuse_charset(root: Message) -> bool:
    """Whether a header of the message or of any of its parts names a refused charset
    in an encoded word or parameter (the parser read it as unknown 8-bit data)."""
    stack = [root]
    while stack:
        part = stack.pop()
        if any(charsets.neutralize_header(value)[1] for _, value in _raw_headers(part)):
            return True
        children = part.get_payload() if part.is_multipart() else None
        if isinstance(children, list):
            stack.extend(child for child in children if isinstance(child, Message))
    return False


def _content_id(raw: str | None) -> str | None:
    if raw is None:
        return None
    return raw.strip().removeprefix("<").removesuffix(">").strip() or None


def _is_attached(part: _MimePart) -> bool:
    """Whether a leaf is an attachment rather than a body part of its message."""
    if part.disposition == "attachment" or part.filename:
        return True
    # Inline images, calendars, signatures...: anything that is not a text body is content
    # worth keeping, with or without a Content-ID.
    return part.content_type not in _BODY_TYPES


def _is_inline(part: _MimePart) -> bool:
    # A part with a Content-ID and no disposition is referenced from the HTML (cid:...).
    return part.disposition == "inline" or (
        part.disposition is None and part.content_id is not None
    )


# --------------------------------------------------------------------------- attachments


def check_mime_shape(raw: bytes, limits: EmailLimits = DEFAULT_LIMITS) -> None:
    """Refuse an email over the parts, nesting or header limits, from a scan of its raw
    lines (milliseconds for a parts bomb whose full parse takes seconds)."""
    shape = mime_shape.scan(
        raw, max_entities=limits.max_mime_parts, max_depth=limits.max_nesting_depth
    )
    partial = not shape.complete
    if shape.depth > limits.max_nesting_depth:
        raise LimitExceededError(
            "nesting_depth",
            shape.depth,
            limits.max_nesting_depth,
            "levels of MIME nesting",
            at_least=partial,
        )
    if shape.entities > limits.max_mime_parts:
        # Counted to the end for a flat bomb, a lower bound when parts nest further.
        raise LimitExceededError(
            "mime_parts", shape.entities, limits.max_mime_parts, "MIME parts", at_least=partial
        )
    if shape.header_bytes > limits.max_header_bytes:
        raise LimitExceededError(
            "header_bytes", shape.header_bytes, limits.max_header_bytes, "bytes of headers"
        )


def _check_entry_count(msg: Mapping[str, Any], limits: EmailLimits) -> None:
    """Mandrill's own attachment and image entries, counted before any is decoded."""
    entries = sum(
        len(value) for name in ("attachments", "images") if isinstance(value := msg.get(name), dict)
    )
    if entries > limits.max_attachments:
        raise LimitExceededError("attachments", entries, limits.max_attachments, "attachments")


def _attachments(
    msg: Mapping[str, Any], parts: list[_MimePart], limits: EmailLimits
) -> tuple[ParsedAttachment, ...]:
    pool = _PartPool([part for part in parts if _is_attached(part)])
    found: list[ParsedAttachment] = []
    for field_name, is_image in (("attachments", False), ("images", True)):
        for position, (key, entry) in enumerate(_entries(msg, field_name), start=1):
            where = f"msg.{field_name} entry #{position}"
            found.append(
                _from_entry(where, key, entry, is_image=is_image, pool=pool, number=len(found) + 1)
            )
    # Whatever Mandrill did not deliver (nested parts of forwarded mail, parts it skipped).
    remaining = pool.remaining()
    if len(found) + len(remaining) > limits.max_attachments:
        raise LimitExceededError(
            "attachments", len(found) + len(remaining), limits.max_attachments, "attachments"
        )
    for part in remaining:
        found.append(_from_part(part, len(found) + 1))
    return tuple(found)


class _PartPool:
    """The attachment MIME parts that no Mandrill entry has claimed yet, in document order.

    Each part covers at most one entry: two different files may share a name (every iPhone
    photo is "image.jpeg"), and a name match must not hide the second one.
    """

    def __init__(self, parts: list[_MimePart]) -> None:
        self._unused = list(parts)

    def find(self, digest: str, content_id: str | None, filename: str | None) -> _MimePart | None:
        """The part that is this entry: same bytes, else same Content-ID, else same name."""
        for part in self._unused:
            if part.sha256 == digest:
                return part
        for part in self._unused:
            if content_id is not None and part.content_id == content_id:
                return part
        for part in self._unused:
            if filename is not None and _clean_filename(part.filename) == filename:
                return part
        return None

    def claim(self, part: _MimePart | None) -> None:
        if part is not None:
            # By identity: two parts can be equal field for field (the same file twice).
            self._unused = [other for other in self._unused if other is not part]

    def remaining(self) -> list[_MimePart]:
        return list(self._unused)


def _entries(msg: Mapping[str, Any], field_name: str) -> list[tuple[str, dict[str, Any]]]:
    value = msg.get(field_name)
    # PHP encodes an empty associative array as [], the same trap as "headers": [].
    if value is None or value == []:
        return []
    if not isinstance(value, dict):
        raise PermanentEventError(
            f"msg.{field_name} is not a JSON object (got {_json_type(value)})"
        )
    entries: list[tuple[str, dict[str, Any]]] = []
    for position, (key, entry) in enumerate(value.items(), start=1):
        if not isinstance(entry, dict):
            raise PermanentEventError(
                f"msg.{field_name} entry #{position} is not a JSON object (got {_json_type(entry)})"
            )
        entries.append((str(key), entry))
    return entries


def _from_entry(
    where: str,
    key: str,
    entry: Mapping[str, Any],
    *,
    is_image: bool,
    pool: _PartPool,
    number: int,
) -> ParsedAttachment:
    content = entry.get("content")
    if not isinstance(content, str):
        raise PermanentEventError(f"{where} content is not a string (got {_json_type(content)})")
    flag = entry.get("base64")
    if flag is not None and not isinstance(flag, bool):
        raise PermanentEventError(f"{where} base64 flag is not a boolean (got {_json_type(flag)})")
    declared = entry.get("name") if isinstance(entry.get("name"), str) else None
    wanted_name = _clean_filename(declared if declared is not None else key)
    key_cid = _content_id(key) if is_image else None

    part: _MimePart | None = None
    if flag is True or (is_image and flag is None):
        # Images never carry the flag and are always base64.
        data = _decode_base64(content, where)
        digest = _sha256_bytes(data)
    else:
        # base64 false or no flag: Mandrill hands over text decoded from the attachment's
        # charset; the MIME part of the same name holds the bytes the sender attached.
        data = content.encode("utf-8", "surrogatepass")
        digest = _sha256_bytes(data)
        part = pool.find(digest, None, wanted_name)
        if part is not None:
            data, digest = part.data, part.sha256
    if part is None:
        part = pool.find(digest, key_cid, wanted_name)
    pool.claim(part)

    # An images key is a Content-ID when a part has that Content-ID, or when it differs from
    # the entry's name and no part tells us otherwise.
    keyed_by_cid = key_cid is not None and (
        (part is not None and part.content_id == key_cid)
        or (part is None and declared is not None and declared != key)
    )
    content_id = part.content_id if part is not None and part.content_id else None
    if content_id is None and keyed_by_cid:
        content_id = key_cid
    filename = (
        wanted_name
        or _clean_filename(part.filename if part is not None else None)
        or (None if keyed_by_cid else _clean_filename(key))
        or _fallback_name(number)
    )
    if is_image:
        # Mandrill files every image under "images", also ones sent as ordinary attachments
        # (inbound_with_image.json): the part's explicit disposition wins over the default.
        inline = part is None or part.disposition != "attachment"
    else:
        inline = part is not None and _is_inline(part)
    content_type = _content_type(entry.get("type"), part)
    return _attachment(filename, content_type, data, content_id, inline, sha256=digest)


def _from_part(part: _MimePart, number: int) -> ParsedAttachment:
    return _attachment(
        _clean_filename(part.filename) or _fallback_name(number),
        part.content_type or DEFAULT_CONTENT_TYPE,
        part.data,
        part.content_id,
        _is_inline(part),
        sha256=part.sha256,
    )


def _attachment(
    filename: str,
    content_type: str,
    data: bytes,
    content_id: str | None,
    inline: bool,
    *,
    sha256: str,
) -> ParsedAttachment:
    # sha256 is the digest of data the caller already has (matching parts needs it).
    return ParsedAttachment(
        filename=filename,
        content_type=content_type,
        content=data,
        sha256=sha256,
        size=len(data),
        content_id=content_id,
        inline=inline,
    )


def _decode_base64(content: str, where: str) -> bytes:
    # Line breaks are legal in base64 transports; anything else outside the alphabet is not.
    # b64decode(s, validate=True) is a2b_base64(s, strict_mode=True) on s as bytes; called
    # directly, a2b_base64 reads an ASCII str's own buffer. Tried first on the content as
    # it is (Mandrill sends it without line breaks), which spares three transient copies
    # of a 24 MB attachment; strict mode refuses whitespace, so content that has some is
    # decoded as before, without it. Same bytes, same refusals.
    try:
        return binascii.a2b_base64(content, strict_mode=True)
    except ValueError:
        pass
    compact = "".join(content.split())
    try:
        return binascii.a2b_base64(compact, strict_mode=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII characters in the str
        raise PermanentEventError(f"{where} content is not valid base64") from exc


def _content_type(declared: object, part: _MimePart | None) -> str:
    content_type = _opt_nonblank(declared)
    if content_type is None and part is not None:
        content_type = part.content_type
    return (content_type or DEFAULT_CONTENT_TYPE)[: columns.CONTENT_TYPE_CHARS]


def _fallback_name(number: int) -> str:
    return f"attachment-{number}"


# --------------------------------------------------------------------------- filenames


def _clean_filename(name: object) -> str | None:
    if not isinstance(name, str):
        return None
    # Senders' clients put paths in names; either separator may come from either platform.
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFC", base)
    # Category C: controls, format characters (e.g. the right-to-left override used to
    # disguise extensions), lone surrogates, private use and unassigned code points.
    base = "".join(char for char in base if not unicodedata.category(char).startswith("C"))
    # Leading dots would make hidden files or "." / ".."; blanks among them go too. One
    # match of the leading run, not a strip per dot: that is quadratic on ". . . .".
    base = _LEADING_DOTS_AND_BLANKS.sub("", base.rstrip(), count=1)
    if len(base) > columns.FILENAME_CHARS:
        base = _truncate_filename(base)
    return base or None


def _truncate_filename(name: str) -> str:
    stem, dot, extension = name.rpartition(".")
    if dot and stem and len(extension) <= _MAX_EXTENSION_CHARS:
        # Keep the extension: it is what tells people and programs how to open the file.
        keep = columns.FILENAME_CHARS - len(extension) - 1
        return f"{stem[:keep].rstrip()}.{extension}"
    return name[: columns.FILENAME_CHARS].rstrip()


# --------------------------------------------------------------------------- events


def _kind_text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return storable_text(value).strip()[: columns.EVENT_KIND_CHARS] or None


def _sync_recipient(event: Mapping[str, Any]) -> str | None:
    # Blacklist sync events carry a "reject", whitelist ones an "entry".
    for key in ("reject", "entry"):
        value = event.get(key)
        if isinstance(value, dict):
            email = _opt_nonblank(value.get("email"))
            if email is not None:
                return email
    return None


def _event_digest(event: Any) -> str:
    try:
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        # Not reachable from json.loads output (keys are always strings); kept so that
        # parse_event never raises, whatever it is handed.
        canonical = repr(event)
    return _sha256_text(canonical)


# --------------------------------------------------------------------------- small helpers


def _guard(call: Callable[[], _T], default: _T) -> _T:
    """Call a stdlib accessor that may raise on malformed input; ``default`` if it does."""
    try:
        return call()
    except INTERRUPTS:
        raise
    except Exception:
        return default


def _opt_str(value: object) -> str | None:
    return storable_text(value) if isinstance(value, str) else None


def _opt_nonblank(value: object) -> str | None:
    text = _opt_str(value)
    return (text.strip() or None) if text is not None else None


def _opt_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # a JSON integer too large for a float
        return None
    return number if math.isfinite(number) else None


def _opt_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


_JSON_TYPES: Final = (
    (bool, "boolean"),
    (int, "number"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def _json_type(value: object) -> str:
    """The JSON name of a value's type, for error messages that must not quote the value."""
    if value is None:
        return "null"
    # bool before int: True is an int to isinstance.
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_text(text: str) -> str:
    return _sha256_bytes(text.encode("utf-8", "surrogatepass"))
