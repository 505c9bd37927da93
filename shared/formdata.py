"""Decoding ``application/x-www-form-urlencoded`` bodies, shared by receiver and worker.

The receiver needs the decoded values to check the signature and the worker needs them
to read the batch; both must decode the same way, byte for byte.

The decoding is ``urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
errors="strict")``, done by ada-url's ``URLSearchParams`` (the WHATWG form parser of the
Ada URL library, in C++). It gives the same pairs, in the same order, and raises on the same
inputs (percent-escapes that are not UTF-8), at about twenty times the speed of the
pure-Python ``parse_qsl`` (0.08 ms instead of 0.8 ms for a 100 KB Mandrill body).

The receiver does not need the decoded values as strings, only their UTF-8 bytes in
signature order, so :func:`form_fields` locates the fields without decoding the values and
:func:`iter_value_utf8` decodes one value piece by piece: a 55 MB body is verified with a
few MB of working memory instead of three more copies of itself. The worker reads the
batch with :func:`field_value_utf8`, which builds the events value alone in the same way.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ada_url import URLSearchParams

EVENTS_FIELD = "mandrill_events"

# Values are decoded in pieces of about this many encoded bytes.
CHUNK_BYTES = 512 * 1024

# Where a value can be cut without cutting a percent-escape in two or a character in two:
# not at the first or second hex digit of an escape ('%' and two hex digits: a '%' is never
# inside another escape), and where a decoded byte starts that cannot continue a UTF-8
# sequence (anything but 0x80-0xBF: raw, escaped, or a '%' that escapes nothing).
_HEX = rb"[0-9A-Fa-f]"
_CUT_POINT = re.compile(
    rb"(?s)(?:(?<!%)|(?!" + _HEX + rb"{2}))"
    rb"(?:(?<!%" + _HEX + rb")|(?!" + _HEX + rb"))"
    rb"(?:[^%\x80-\xbf]|%[0-7C-Fc-f]" + _HEX + rb"|%(?!" + _HEX + rb"{2}))"
)
# A cut is looked for within this many bytes after the chunk size. Where none is, only
# continuation bytes follow one another (over 20 of them): not UTF-8.
_CUT_WINDOW = 64
# Bytes that an encoded value made only of whitespace, '[' and ']' can contain.
_NOT_EMPTY_BATCH = re.compile(rb"[^\[\]%+0-9A-Fa-f\t-\r\x1c-\x20\x80-\xff]")
# An empty batch is decided from at most this many encoded bytes at a time.
_EMPTY_BATCH_CHUNK = 64 * 1024


class FormDecodeError(ValueError):
    """The body is not valid form encoding of UTF-8 text."""


class FormLimitError(FormDecodeError):
    """The form has more fields, or a longer field name, than the caller allows."""


class TooManyFieldsError(FormLimitError):
    """The form has more pieces between '&' than the caller allows."""


class NameTooLongError(FormLimitError):
    """A field name is longer than the caller allows."""


def _invalid() -> FormDecodeError:
    return FormDecodeError("the form body is not valid UTF-8")


def decode_form(body: bytes) -> list[tuple[str, str]]:
    """Every (name, value) pair of the form, decoded, in order (as ``parse_qsl``)."""
    try:
        return list(URLSearchParams(body.decode("utf-8")).items())
    except UnicodeDecodeError as exc:
        raise _invalid() from exc


def events_field(fields: list[tuple[str, str]]) -> str | None:
    """The ``mandrill_events`` value (the last one wins, as in PHP, which Mandrill is)."""
    value: str | None = None
    for key, item in fields:
        if key == EVENTS_FIELD:
            value = item
    return value


# --- locating fields without decoding their values -----------------------------------


@dataclass(frozen=True, slots=True)
class FormField:
    """One field of a form body: its decoded name and where its encoded value lies."""

    name: str
    start: int
    end: int


def _decode_piece(raw: bytes) -> str:
    """Decode a piece of a name or value holding no '&' (and, for a name, no '=')."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid() from exc
    if "%" not in text and "+" not in text:
        return text
    try:
        # One field named "v": its value is the piece, decoded (the first '=' is ours).
        return URLSearchParams("v=" + text).get("v")
    except UnicodeDecodeError as exc:
        raise _invalid() from exc


def _check_utf8(body: bytes) -> None:
    # What Mandrill sends is ASCII: everything else is percent-encoded. A large body is
    # looked at in pieces, so that a thread doing this lets others run in between.
    if len(body) <= CHUNK_BYTES:
        if body.isascii():
            return
    elif all(
        body[start : start + CHUNK_BYTES].isascii() for start in range(0, len(body), CHUNK_BYTES)
    ):
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(body), CHUNK_BYTES):
            decoder.decode(body[start : start + CHUNK_BYTES])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise _invalid() from exc


def _pieces(body: bytes, max_fields: int | None) -> list[tuple[int, int]]:
    """Where each '&'-separated piece lies, empty ones skipped (as ``parse_qsl`` does).

    With ``max_fields``, the scan stops at the first piece past it, empty ones counted
    too: a body of a million '&' costs as much as one of ``max_fields``, and nothing is
    built per piece before the count is known to be small.
    """
    pieces: list[tuple[int, int]] = []
    seen = 0
    size = len(body)
    end = -1
    while end < size:
        start = end + 1
        end = body.find(b"&", start)
        if end < 0:
            end = size
        seen += 1
        if max_fields is not None and seen > max_fields:
            raise TooManyFieldsError(f"the form has more than {max_fields} fields")
        if start != end:
            pieces.append((start, end))
    return pieces


def form_fields(
    body: bytes, *, max_fields: int | None = None, max_name_bytes: int | None = None
) -> list[FormField]:
    """The fields of the form, in order, names decoded and values only located.

    Raises :class:`FormDecodeError` where :func:`decode_form` would, except for escapes in
    values that are not UTF-8: :func:`iter_value_utf8` raises for those when it meets them.
    Raises :class:`FormLimitError` for a form with more than ``max_fields`` pieces between
    '&' (empty ones included) or a field name longer than ``max_name_bytes`` encoded bytes,
    before any name is decoded: the work and memory of a refusal stay a small constant
    beyond the body itself.
    """
    pieces = _pieces(body, max_fields)
    located: list[tuple[int, int, int]] = []
    for start, end in pieces:
        equals = body.find(b"=", start, end)
        name_end = end if equals < 0 else equals
        if max_name_bytes is not None and name_end - start > max_name_bytes:
            raise NameTooLongError(f"a form field name is longer than {max_name_bytes} bytes")
        located.append((start, name_end, end))
    _check_utf8(body)
    return [
        FormField(
            _decode_piece(body[start:name_end]), end if name_end == end else name_end + 1, end
        )
        for start, name_end, end in located
    ]


def iter_value_utf8(
    body: bytes, field: FormField, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """The decoded value of ``field``, UTF-8 encoded, in pieces of bounded size.

    The pieces joined are ``value.encode("utf-8")`` for the value :func:`decode_form` gives;
    a value that is not UTF-8 raises :class:`FormDecodeError`.
    """
    start, end = field.start, field.end
    while start < end:
        stop = end
        if end - start > chunk_bytes:
            # Searched in a bounded window, so that a value with no cut point (8 MB of
            # "%80") costs no scan to its end and is never decoded in one piece. A match
            # within 3 bytes of the window's end may be one only because the window ends
            # there (the look-aheads see 3 bytes): it does not count.
            window = min(end, start + chunk_bytes + _CUT_WINDOW)
            cut = _CUT_POINT.search(body, start + chunk_bytes, window)
            if cut is not None and (cut.start() + 3 <= window or window == end):
                stop = cut.start()
            elif window < end:
                raise _invalid()
        yield _decode_piece(body[start:stop]).encode("utf-8")
        start = stop


def last_field(fields: list[FormField], name: str) -> FormField | None:
    """The last field called ``name`` (the last one wins, as in :func:`events_field`)."""
    found: FormField | None = None
    for field in fields:
        if field.name == name:
            found = field
    return found


def field_value_utf8(body: bytes, name: str, chunk_bytes: int = CHUNK_BYTES) -> bytearray | None:
    """The value of the last field called ``name``, UTF-8 encoded: what
    ``events_field(decode_form(body))`` gives, encoded (None when there is no such
    field); raises :class:`FormDecodeError` for the same bodies as :func:`decode_form`.

    Only that value is built: the other values are decoded piece by piece and dropped
    (to refuse the same invalid escapes), and the value is assembled from bounded
    pieces. A caller that drops the body before decoding the result to a str never
    holds the body, the value and its str at once, nor a decoded copy of the whole
    body and of every field (the worker's memory peak for a 55 MB body).
    """
    fields = form_fields(body)
    wanted = last_field(fields, name)
    for field in fields:
        if field is not wanted:
            for _ in iter_value_utf8(body, field, chunk_bytes):
                pass
    if wanted is None:
        return None
    value = bytearray()
    for piece in iter_value_utf8(body, wanted, chunk_bytes):
        value += piece
    return value


def is_empty_batch(body: bytes, field: FormField, chunk_bytes: int = _EMPTY_BATCH_CHUNK) -> bool:
    """Whether the value is ``[]`` give or take whitespace, as Mandrill's URL check sends.

    Decides from the encoded bytes when it can: a value holding any other character is
    not empty, and most values show one within their first few bytes (only the first KB
    is looked at: a regex scan of 8 MB holds the GIL for tens of ms). Otherwise the value
    is decoded piece by piece and given up on at its third character that is not outer
    whitespace, so even 8 MB of ``[[[[`` is never decoded into one string.
    """
    if _NOT_EMPTY_BATCH.search(body, field.start, min(field.end, field.start + 1024)):
        return False
    core = ""  # the value so far without its leading whitespace, trailing whitespace cut
    gap = False  # whether whitespace followed core
    for piece in iter_value_utf8(body, field, chunk_bytes):
        text = piece.decode("utf-8")  # cut at ASCII bytes: whole characters
        if not core:
            text = text.lstrip()
        stripped = text.rstrip()
        if stripped:
            if gap or len(core) + len(stripped) > 2:
                return False  # whitespace inside, or more than "[]"
            core += stripped
        gap = gap or len(stripped) < len(text)
    return core == "[]"
