"""The loop guard: whether a machine sent an email (RFC 3834 signals, delivery-status
reports, auto-reply headers, the null sender), and the addresses a bounce reports
(flufl.bounce), so that no agent answers an out-of-office or a bounce and starts a mail
loop. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from email import message_from_bytes
from email import policy as email_policy
from typing import Final

from flufl.bounce import all_failures

from worker.ingest.columns import INDEXED_TEXT_CHARS
from worker.ingest.parsing import ParsedEmail
from worker.interrupts import INTERRUPTS

# flufl.bounce's detectors run a couple of dozen expressions over every body line. What
# they look for (the report, the failure text) comes first in a bounce; the returned
# message after it (which can be the bulk of the bytes) is not read past this.
_MAX_BOUNCE_BYTES: Final = 64 * 1024
_MAX_REASON_CHARS: Final = 64
_MAX_BOUNCED: Final = 100
_PRECEDENCE_AUTO: Final = frozenset({"bulk", "junk", "list", "auto_reply"})
_SUPPRESS_NONE: Final = frozenset({"", "none"})


def _header_values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    wanted = name.lower()
    return [value.strip() for key, value in headers if key.lower() == wanted]


def auto_submitted(email: ParsedEmail) -> tuple[bool, str | None, tuple[str, ...]]:
    """Whether a machine sent this email, why, and the addresses a bounce reports.

    Signals, first match wins for the reason: a delivery-status report (multipart/report,
    RFC 3464) or a bounce flufl.bounce recognises; ``Auto-Submitted`` other than ``no``
    (RFC 3834); ``Precedence: bulk|junk|list|auto_reply``; ``X-Autoreply``/``X-Autorespond``;
    ``X-Auto-Response-Suppress`` (Exchange sets it on its own automatic replies); an empty
    Return-Path ``<>`` (the null sender of bounces and auto-replies).
    """
    pairs = list(email.headers)
    content_type = " ".join(_header_values(pairs, "Content-Type")).lower()
    return_paths = _header_values(pairs, "Return-Path")
    null_sender = any(value.replace(" ", "") in ("<>", "") for value in return_paths)
    # The From header as worker.ingest.parsing read it (display name and address).
    sender = f"{email.from_name or ''} {email.from_address or ''}".lower()
    is_report = "multipart/report" in content_type
    looks_bounced = is_report or null_sender or "mailer-daemon" in sender or "postmaster" in sender
    bounced = _bounced_addresses(email.raw) if looks_bounced else ()
    if is_report or bounced:
        return True, "dsn", bounced

    reason = _rfc3834_reason(pairs)
    if reason is None and null_sender:
        reason = "return-path:empty"
    return reason is not None, reason, ()


def _rfc3834_reason(pairs: list[tuple[str, str]]) -> str | None:
    for value in _header_values(pairs, "Auto-Submitted"):
        keyword = value.split(";")[0].strip().lower()
        if keyword and keyword != "no":
            return f"auto-submitted:{keyword}"[:_MAX_REASON_CHARS]
    for value in _header_values(pairs, "Precedence"):
        if value.lower() in _PRECEDENCE_AUTO:
            return f"precedence:{value.lower()}"[:_MAX_REASON_CHARS]
    if _header_values(pairs, "X-Autoreply") or _header_values(pairs, "X-Autorespond"):
        return "x-autoreply"
    suppress = _header_values(pairs, "X-Auto-Response-Suppress")
    if any(value.lower() not in _SUPPRESS_NONE for value in suppress):
        return "x-auto-response-suppress"
    return None


def _bounced_addresses(raw: bytes) -> tuple[str, ...]:
    try:
        # flufl.bounce's detectors were written against the compat32 Message API.
        message = message_from_bytes(raw[:_MAX_BOUNCE_BYTES], policy=email_policy.compat32)
        temporary, permanent = all_failures(message)
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception:
        return ()
    found: set[str] = set()
    for address in (*permanent, *temporary):
        text = address.decode("utf-8", "replace") if isinstance(address, bytes) else str(address)
        text = text.strip().strip("<>").strip().lower()
        if text:
            found.add(text[:INDEXED_TEXT_CHARS])
    return tuple(sorted(found))[:_MAX_BOUNCED]
