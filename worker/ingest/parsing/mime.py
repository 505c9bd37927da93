"""MIME and transfer encodings: the message tree parsed within its limits, its leaf parts
read once, base64 decoded in pieces."""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field
from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message
from email.policy import Policy
from typing import Final

from worker.ingest import columns
from worker.ingest.columns import storable_text
from worker.ingest.parsing import charsets, mime_shape
from worker.ingest.parsing.headers import HEADERS, POLICY, raw_header, raw_headers
from worker.ingest.parsing.types import (
    DEFAULT_LIMITS,
    EmailLimits,
    LimitExceededError,
    PermanentEventError,
)
from worker.ingest.parsing.values import guard, sha256_bytes
from worker.interrupts import INTERRUPTS

DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
BODY_TYPES: Final = frozenset({"text/plain", "text/html"})
# The MIME parser is fed pieces of this many bytes (see parse_mime).
_FEED_BYTES: Final = 64 * 1024
# Base64 parts of at least this many characters are decoded in pieces of about the
# second size (see _large_base64_part).
_PIECEWISE_BASE64_CHARS: Final = 1024 * 1024
_BASE64_PIECE_CHARS: Final = 1024 * 1024


def parse_mime(raw: bytes, max_entities: int) -> Message:
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
            policy=POLICY.clone(
                message_factory=_Entities(max_entities), header_factory=HEADERS.for_email()
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


# --------------------------------------------------------------------------- MIME parts


@dataclass(frozen=True, slots=True)
class MimePart:
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


def mime_parts(root: Message, limits: EmailLimits = DEFAULT_LIMITS) -> list[MimePart]:
    """Every leaf part in document order, walking into multiparts and attached messages.

    An explicit stack instead of Message.walk(): same order, no recursion limit. And not
    iter_attachments(), which misses the parts of forwarded mail. The nesting cap is
    checked again here on the parsed tree (the pre-scan of :func:`check_mime_shape`
    reads raw lines and may miss exotic structures; the parts cap is kept by the
    parser's factory, :class:`_Entities`), still before any part is decoded.
    """
    parts: list[MimePart] = []
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
            inside = nested or guard(part.get_content_maintype, "") == "message"
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


def _mime_part(part: Message, nested: bool) -> MimePart:
    content_type = guard(part.get_content_type, DEFAULT_CONTENT_TYPE)[: columns.CONTENT_TYPE_CHARS]
    data = _part_bytes(part)
    filename = guard(part.get_filename, None)
    text, refused = _part_text(part, data) if content_type in BODY_TYPES else (None, False)
    return MimePart(
        filename=storable_text(filename) if isinstance(filename, str) else None,
        content_type=content_type,
        disposition=guard(part.get_content_disposition, None),
        content_id=content_id_of(raw_header(part, "Content-ID")),
        data=data,
        sha256=sha256_bytes(data),
        nested=nested,
        text=text,
        charset_refused=refused,
    )


def _part_bytes(part: Message) -> bytes:
    large = guard(lambda: _large_base64_part(part), None)
    if large is not None:
        return large
    payload = guard(lambda: part.get_payload(decode=True), None)
    if isinstance(payload, bytes):
        return payload
    undecoded = part.get_payload()
    if isinstance(undecoded, str):
        # The bytes parser stores undecodable bytes as surrogate escapes; this restores them.
        return guard(lambda: undecoded.encode("utf-8", "surrogateescape"), b"")
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
    charset = guard(part.get_content_charset, None)
    refused = charsets.is_refused(charset)
    encoding = (raw_header(part, "Content-Transfer-Encoding") or "").lower()
    if encoding not in ("base64", "quoted-printable"):
        # Unencoded 8-bit text was transcoded to UTF-8 by Mandrill whatever charset the part
        # still declares, so UTF-8 is the truth when it decodes.
        try:
            return storable_text(data.decode("utf-8")), refused
        except UnicodeDecodeError:
            pass
    # Only a mail charset's codec (worker.ingest.parsing.charsets): anything else is read as UTF-8.
    text, refused = charsets.decode_text(data, charset)
    return storable_text(text), refused


def headers_refuse_charset(root: Message) -> bool:
    """Whether a header of the message or of any of its parts names a refused charset
    in an encoded word or parameter (the parser read it as unknown 8-bit data)."""
    stack = [root]
    while stack:
        part = stack.pop()
        if any(charsets.neutralize_header(value)[1] for _, value in raw_headers(part)):
            return True
        children = part.get_payload() if part.is_multipart() else None
        if isinstance(children, list):
            stack.extend(child for child in children if isinstance(child, Message))
    return False


def content_id_of(raw: str | None) -> str | None:
    if raw is None:
        return None
    return raw.strip().removeprefix("<").removesuffix(">").strip() or None


def is_attached(part: MimePart) -> bool:
    """Whether a leaf is an attachment rather than a body part of its message."""
    if part.disposition == "attachment" or part.filename:
        return True
    # Inline images, calendars, signatures...: anything that is not a text body is content
    # worth keeping, with or without a Content-ID.
    return part.content_type not in BODY_TYPES


def is_inline(part: MimePart) -> bool:
    # A part with a Content-ID and no disposition is referenced from the HTML (cid:...).
    return part.disposition == "inline" or (
        part.disposition is None and part.content_id is not None
    )


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
