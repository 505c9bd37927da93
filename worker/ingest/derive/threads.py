"""Threads: which conversation an email belongs to, and the plus-address tag platforms use
to route a reply to the object it is about. No I/O.

Two rules give an email's conversation id. This module holds the stateless one
(:func:`conversation_id`: the thread root as the email's own headers name it) and the ids
of the stored emails it may reply to (:func:`parent_message_ids`); storage
(``worker.ingest.storage.threads``) prefers the conversation of such a stored parent, and
falls back to the stateless id when none is stored.

Only well-formed msg-ids (``<left@right>``, nothing blank inside) of In-Reply-To and
References count: clients write free text there too (``Your message of "Thu, 01 Aug
..."``), and a word of it taken for an id would join unrelated mail into one thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from worker.ingest.columns import INDEXED_TEXT_CHARS

# An id in angle brackets, as Message-ID, In-Reply-To and References carry it.
ANGLE_ID: Final = re.compile(r"<([^<>\s]+)>")
# RFC 5322's msg-id as clients write it: an @ with text on both sides, in angle brackets,
# no blank or bracket inside (the local part may hold an @ of its own; the domain not).
_MSG_ID: Final = re.compile(r"<[^<>\s]+@[^<>\s@]+>")
# How many parents an email looks up at most (real threads name a few dozen at most).
MAX_PARENT_IDS: Final = 100


def well_formed_id(value: str | None) -> str | None:
    """``value`` without outer blanks when it is one well-formed msg-id, else None."""
    if value is None:
        return None
    value = value.strip()
    return value if _MSG_ID.fullmatch(value) else None


def normalize_message_id(value: str | None) -> str | None:
    """``<Local@Domain>`` -> ``local@domain``-style key: brackets and blanks dropped, the
    domain lower-cased (domains are case-insensitive; local parts formally are not, so they
    are kept as sent)."""
    if value is None:
        return None
    found = ANGLE_ID.search(value)
    ident = (found.group(1) if found else value).strip().strip("<>").strip()
    if not ident:
        return None
    local, at, domain = ident.rpartition("@")
    ident = f"{local}@{domain.lower()}" if at else ident
    return ident[:INDEXED_TEXT_CHARS]


def conversation_id(
    message_id: str | None, in_reply_to: str | None, references: Iterable[str]
) -> str | None:
    """The thread root: first well-formed References id, else a well-formed In-Reply-To,
    else the own Message-ID (as sent: it names only this email, so free text there joins
    nothing).

    References lists the thread from its root (RFC 5322 3.6.4), so its first id is the same
    for every message of the thread, whoever's client trimmed the middle of the list.
    """
    replied = [well_formed_id(value) for value in (*references, in_reply_to)]
    for candidate in (*replied, message_id):
        normalised = normalize_message_id(candidate)
        if normalised is not None:
            return normalised
    return None


def parent_message_ids(in_reply_to: str | None, references: Iterable[str]) -> tuple[str, ...]:
    """The ids of the emails this one replies to, as their Message-ID column stores them
    (brackets kept, as sent: clients copy the parent's id verbatim), nearest first:
    In-Reply-To, then References from its end (the parent) back to the root. Well-formed
    ids only, each once."""
    nearest_first = (in_reply_to, *reversed(tuple(references)))
    found = (well_formed_id(value) for value in nearest_first)
    # The Message-ID column holds at most this many characters (rows.email_values).
    ids = tuple(dict.fromkeys(ident[:INDEXED_TEXT_CHARS] for ident in found if ident))
    if len(ids) > MAX_PARENT_IDS:
        # Each id is a probe of the index: a hostile References of thousands of ids is cut
        # to the nearest ones and the root.
        ids = (*ids[: MAX_PARENT_IDS - 1], ids[-1])
    return ids


def mailbox_hash(recipient: str | None) -> str | None:
    """The plus-address tag of the envelope recipient: ``inbox+ticket-42@x`` -> ``ticket-42``."""
    if not recipient:
        return None
    local = recipient.strip().rpartition("@")[0] or recipient.strip()
    _, plus, tag = local.partition("+")
    return tag[:INDEXED_TEXT_CHARS] if plus and tag else None
