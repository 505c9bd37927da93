"""Headers and addresses: the policy's header parser kept cheap and total, decoded
headers, address lists, ids and dates."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any, Final

from worker.ingest import columns
from worker.ingest.columns import storable_text
from worker.ingest.parsing import charsets
from worker.ingest.parsing.types import Address
from worker.ingest.parsing.values import opt_nonblank
from worker.interrupts import INTERRUPTS

_MESSAGE_ID_TOKEN: Final = re.compile(r"<[^<>\s]+>")


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
        budget: HeaderBudget | None = None,
    ) -> None:
        super().__init__()
        self._parsed: dict[tuple[str, str], BaseHeader] = {} if memo is None else memo
        self._budget = budget

    def for_email(self) -> _RememberedHeaders:
        """The registry of one email's parse: this one's memo, and a budget of characters
        of long (not remembered) values, since a part's accessors parse its Content-Type
        again and again: past the budget a long value is read only as far as a short one,
        and that parse is remembered."""
        return _RememberedHeaders(self._parsed, HeaderBudget(_LONG_HEADER_BUDGET))

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
HEADERS: Final = _RememberedHeaders()
POLICY: Final = policy.default.clone(header_factory=HEADERS)


def _parseable_header(value: str) -> str:
    """What the policy parses of a header value: refused charsets neutralised
    (worker.ingest.parsing.charsets), and cut at a separator when longer than
    _MAX_PARSED_HEADER_CHARS."""
    return _cut_at_separator(charsets.neutralize_header(value)[0], _MAX_PARSED_HEADER_CHARS)


def _cut_at_separator(value: str, limit: int) -> str:
    """``value`` if at most ``limit`` long, else cut at its last separator before it."""
    if len(value) <= limit:
        return value
    head = value[: max(limit, 0)]
    cut = max(head.rfind(separator) for separator in (",", ";", " ", "\t"))
    return head[:cut] if cut > 0 else head


class HeaderBudget:
    """The characters of header values one email may still have decoded by the policy."""

    def __init__(self, chars: int = _PARSED_HEADER_BUDGET) -> None:
        self.chars = chars

    def take(self, chars: int) -> bool:
        if chars > self.chars:
            return False
        self.chars -= chars
        return True


def sender(
    message: Message, msg: Mapping[str, Any], budget: HeaderBudget
) -> tuple[str | None, str | None]:
    found = address_list(message, "From", budget)
    if found:
        return found[0].address, found[0].name
    return opt_nonblank(msg.get("from_email")), opt_nonblank(msg.get("from_name"))


def raw_headers(message: Message) -> list[tuple[str, str]]:
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
    return [value for key, value in raw_headers(message) if key.lower() == wanted]


def raw_header(message: Message, name: str) -> str | None:
    """The first ``name`` header, unfolded and undecoded; None when absent."""
    values = _raw_values(message, name)
    return storable_text(_unfold(values[0])).strip() if values else None


def id_header(message: Message, msg: Mapping[str, Any], name: str) -> str | None:
    """An undecoded header of raw_msg, else the same header in Mandrill's ``headers`` object.

    Only for ids and the date, which are plain ASCII tokens: a copy of the message whose
    raw_msg lost them (inbound_reply.json has In-Reply-To/References only in ``headers``)
    still threads. Addresses never come from there.
    """
    raw = raw_header(message, name)
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
        return opt_nonblank(_unfold(first)) if isinstance(first, str) else None
    return None


def header_text(message: Message, name: str) -> str | None:
    """The first ``name`` header, decoded (RFC 2047); None when absent. Never raises."""
    values = _raw_values(message, name)
    return _decoded_header(name, values[0]) if values else None


def _decoded_header(name: str, raw: str) -> str:
    if len(raw) > _MAX_PARSED_HEADER_CHARS:
        return _legacy_decoded(raw)
    try:
        return storable_text(str(POLICY.header_fetch_parse(name, raw)))
    except INTERRUPTS:
        raise
    except Exception:
        # The stdlib raises on some malformed headers; the undecoded text is better than none.
        return storable_text(_unfold(raw))


def all_headers(message: Message, budget: HeaderBudget) -> tuple[tuple[str, str], ...]:
    pairs = raw_headers(message)
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


def address_list(message: Message, name: str, budget: HeaderBudget) -> tuple[Address, ...]:
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
        header: Any = POLICY.header_fetch_parse(name, raw)
        addresses = header.addresses
        comment_name = _comment_name(raw) if len(addresses) == 1 else None
        for item in addresses:
            address = _address(item.display_name or comment_name, item.addr_spec)
            if address is not None:
                found.append(address)
    return tuple(found)


def _comment_name(raw: str) -> str | None:
    """The name of RFC 822's ``addr (Name)`` form, which mailx, older MTAs and list
    archives still send: the policy's parser drops comments, the older one keeps the
    comment as the name."""
    if "(" not in raw:
        return None
    pairs = getaddresses([_unfold(raw)])
    return _decode_words(pairs[0][0]) if len(pairs) == 1 and pairs[0][0] else None


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
    address = opt_nonblank(addr_spec)
    if address is None:
        return None
    return Address(name=opt_nonblank(display_name), address=address)


def date_of(raw: str | None) -> datetime | None:
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


def message_id_of(raw: str | None) -> str | None:
    return raw[: columns.MESSAGE_ID_CHARS] if raw else None


def message_ids_of(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    tokens: list[str] = _MESSAGE_ID_TOKEN.findall(raw) or raw.split()
    # dict.fromkeys: drop repeats, keep the thread order.
    return tuple(dict.fromkeys(found[: columns.MESSAGE_ID_CHARS] for found in tokens))


def first_message_id_of(raw: str | None) -> str | None:
    ids = message_ids_of(raw)
    return ids[0] if ids else None
