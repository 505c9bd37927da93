"""The addresses a bounce reports as failed: what flufl.bounce finds, kept only when it is
a real recipient's address. No I/O.

flufl.bounce's detectors match loosely (a bracketed word, the text after "to:"), so what
they return is checked here: a valid addr-spec (``email.headerregistry``) on a dotted
host name, not a mailbox path or a pipe command that a local delivery agent reported,
not a Message-ID quoted in the bounce, and not an address of the bounce's own sender or
recipient (MAILER-DAEMON, and our own address, which sent the message that bounced).
Domains are lower-cased, local parts kept as sent (RFC 5321 lets them be case-sensitive).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes
from email import policy as email_policy
from email.headerregistry import Address
from typing import Final

from flufl.bounce import all_failures

from worker.ingest.derive.threads import ANGLE_ID
from worker.ingest.parsing import ParsedEmail
from worker.interrupts import INTERRUPTS

# flufl.bounce's detectors run a couple of dozen expressions over every body line. What
# they look for (the report, the failure text) comes first in a bounce; the returned
# message after it (which can be the bulk of the bytes) is not read past this.
MAX_BOUNCE_BYTES: Final = 64 * 1024
_MAX_BOUNCED: Final = 100
# RFC 5321's limits: what is longer is not an address a server accepted.
_MAX_ADDRESS_CHARS: Final = 254
_MAX_LOCAL_CHARS: Final = 64
# A line of the bounce is read this far for Message-IDs (RFC 5322's line limit); the rest
# of a longer line cannot be a header line's.
_MAX_LINE_CHARS: Final = 998
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Lines (anywhere in the bounce) that name a message, not a recipient: their <...> tokens
# are Message-IDs. References and In-Reply-To fold onto continuation lines.
_ID_HEADERS: Final = ("in-reply-to:", "references:")
_ID_MARK: Final = "message-id"
_SPLIT: Final = re.compile(r"[\s<>\"(),;\[\]]+")
# What a daemon is called: a bounce's sender, never the recipient that failed.
_DAEMONS: Final = frozenset({"mailer-daemon"})


def bounced_addresses(email: ParsedEmail) -> tuple[str, ...]:
    """The failed recipients a bounce names, valid and sorted; ``()`` when none are found
    or flufl.bounce raises on the message."""
    raw = email.raw[:MAX_BOUNCE_BYTES]
    try:
        # flufl.bounce's detectors were written against the compat32 Message API.
        message = message_from_bytes(raw, policy=email_policy.compat32)
        temporary, permanent = all_failures(message)
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception:
        return ()
    if not permanent and not temporary:
        return ()
    ids = _message_ids(raw.decode("utf-8", "replace"))
    ids.update(_bare(value) for value in (email.message_id, email.in_reply_to) if value)
    ids.update(_bare(value) for value in email.references)
    # The bounce's own sender and recipients: the daemon, and us (we sent what bounced).
    # Not the returned message's From: someone who wrote to themselves bounced too.
    own = [email.from_address or "", email.envelope_recipient or ""]
    own.extend(address.address for address in (*email.to, *email.cc))
    own.extend(_header_values(email, ("sender", "return-path")))
    # Compared in lower case: our own address must not come back in another spelling.
    excluded = {address.lower() for address in _addresses_in(" ".join(own))} | ids
    # One spelling per address (local parts are case-insensitive in practice), the same
    # one on every run although flufl.bounce's results are sets: the one with the fewest
    # capitals, the first in order among those.
    found: dict[str, str] = {}
    for candidate in (*permanent, *temporary):
        text = candidate.decode("utf-8", "replace") if isinstance(candidate, bytes) else candidate
        address = _normalised(str(text))
        if address is None or (key := address.lower()) in excluded:
            continue
        found[key] = min(address, found.get(key, address), key=_spelling_order)
    return tuple(found[key] for key in sorted(found))[:_MAX_BOUNCED]


def _spelling_order(address: str) -> tuple[int, str]:
    return sum(character.isupper() for character in address), address


def _bare(message_id: str) -> str:
    return message_id.strip().strip("<>").strip().lower()


def _normalised(text: str) -> str | None:
    """``text`` as ``local@domain`` with the domain lower-cased, or None when it is not the
    address of a mailbox another server could have refused."""
    text = text.strip().strip("<>").strip()
    if not text or len(text) > _MAX_ADDRESS_CHARS or "@" not in text:
        return None
    try:
        address = Address(addr_spec=text)
    except INTERRUPTS:
        raise
    except Exception:
        return None  # headerregistry raises several kinds for what is not an addr-spec
    local, domain = address.username, address.domain.lower()
    if not local or len(local) > _MAX_LOCAL_CHARS or local[0] in "/|":
        return None  # a mailbox file or a pipe command a local delivery agent reported
    if local.lower() in _DAEMONS or not _is_host_name(domain):
        return None
    return Address(username=local, domain=domain).addr_spec


def _is_host_name(domain: str) -> bool:
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return False
    labels = ascii_domain.split(".")
    return len(labels) > 1 and all(_LABEL.fullmatch(label) for label in labels)


def _header_values(email: ParsedEmail, names: tuple[str, ...]) -> list[str]:
    return [value[:_MAX_LINE_CHARS] for key, value in email.headers if key.lower() in names]


def _message_ids(text: str) -> set[str]:
    """The Message-IDs (bare, lower-cased) that lines of the bounce, or of the message it
    returns, name: a Message-ID, In-Reply-To or References header, or a report's line
    about one (``X-Original-Message-ID:``, "the message-id ... was")."""
    ids: set[str] = set()
    in_id_header = False
    for line in text.splitlines():
        head = line[:_MAX_LINE_CHARS]
        lowered = head.lower()
        folded = in_id_header and head[:1] in (" ", "\t")
        in_id_header = folded or lowered.startswith(_ID_HEADERS)
        if in_id_header or _ID_MARK in lowered:
            ids.update(match.lower() for match in ANGLE_ID.findall(head))
    return ids


def _addresses_in(text: str) -> Iterator[str]:
    # A split, not a search for name@domain: the split is one pass over the line.
    for token in _SPLIT.split(text):
        if "@" in token:
            address = _normalised(token)
            if address:
                yield address
