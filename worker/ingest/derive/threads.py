"""Threads: which conversation an email belongs to, and the plus-address tag platforms use
to route a reply to the object it is about. No I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from worker.ingest.columns import INDEXED_TEXT_CHARS

_ANGLE_ID: Final = re.compile(r"<([^<>\s]+)>")


def normalize_message_id(value: str | None) -> str | None:
    """``<Local@Domain>`` -> ``local@domain``-style key: brackets and blanks dropped, the
    domain lower-cased (domains are case-insensitive; local parts formally are not, so they
    are kept as sent)."""
    if value is None:
        return None
    found = _ANGLE_ID.search(value)
    ident = (found.group(1) if found else value).strip().strip("<>").strip()
    if not ident:
        return None
    local, at, domain = ident.rpartition("@")
    ident = f"{local}@{domain.lower()}" if at else ident
    return ident[:INDEXED_TEXT_CHARS]


def conversation_id(
    message_id: str | None, in_reply_to: str | None, references: Iterable[str]
) -> str | None:
    """The thread root: first References id, else In-Reply-To, else the own Message-ID.

    References lists the thread from its root (RFC 5322 3.6.4), so its first id is the same
    for every message of the thread, whoever's client trimmed the middle of the list.
    """
    for candidate in (*references, in_reply_to, message_id):
        normalised = normalize_message_id(candidate)
        if normalised is not None:
            return normalised
    return None


def mailbox_hash(recipient: str | None) -> str | None:
    """The plus-address tag of the envelope recipient: ``inbox+ticket-42@x`` -> ``ticket-42``."""
    if not recipient:
        return None
    local = recipient.strip().rpartition("@")[0] or recipient.strip()
    _, plus, tag = local.partition("+")
    return tag[:INDEXED_TEXT_CHARS] if plus and tag else None
