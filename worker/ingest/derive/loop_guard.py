"""The loop guard: two signals that an agent must not answer an email (RFC 3834 section 2).

- ``auto_submitted``: a machine wrote it (RFC 3834 ``Auto-Submitted``, delivery-status,
  feedback and disposition reports, auto-reply headers, the null sender, a MAILER-DAEMON
  or postmaster sender), with the addresses a bounce reports (``bounces``);
- ``bulk``: it came through a mailing list or a bulk sender (``Precedence: bulk|list|junk``,
  the RFC 2369/2919 ``List-*`` headers). A person may have written it, so a support inbox
  still reads it, but an automatic answer would go to the list or the newsletter's sender.

Reasons are ``name:value`` or the header's name, in lower case. Headers only (bounces
aside): no body is scanned here. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from worker.ingest.derive.bounces import bounced_addresses
from worker.ingest.parsing import ParsedEmail

_MAX_REASON_CHARS: Final = 64
# Only an answering machine says auto_reply; bulk, list and junk say how mail was sent,
# not who wrote it, and are the bulk signal.
_PRECEDENCE_AUTO: Final = frozenset({"auto_reply"})
_PRECEDENCE_BULK: Final = frozenset({"bulk", "junk", "list"})
_PRECEDENCE_BOUNCE: Final = frozenset({"bulk", "junk"})
_LIST_HEADERS: Final = ("List-Id", "List-Post", "List-Unsubscribe")
_SUPPRESS_NONE: Final = frozenset({"", "none"})
# The senders of bounces (RFC 5321 section 4.5.1 names postmaster as the one role every
# domain has; MAILER-DAEMON is what MTAs sign their reports with).
_DAEMONS: Final = frozenset({"mailer-daemon", "postmaster"})
# Subjects bounce generators write ("Mail delivery failed: returning message to sender",
# "Undeliverable: ...", "Returned Mail - Error During Delivery"), lower-cased substrings:
# reason to look for failed addresses, never to flag an email on their own (a person may
# write "the mail delivery failed again").
_BOUNCE_SUBJECTS: Final = (
    "undeliverable", "undelivered mail", "delivery failure", "delivery status notification",
    "mail delivery failed", "delivery has failed", "returned mail", "could not be delivered",
    "failure notice", "non remis", "unzustellbar", "non recapitabile", "onbestelbaar",
    "no se puede entregar", "não entregue",
)  # fmt: skip
# The prefixes automatic replies put on the subject they answer ("Automatic reply: ...",
# Lotus Notes' "AUTO: Ana is out of the office", "[Automatyczna odpowiedź] ..."). Only at
# the start: a person's "Out of office next week?" is not one.
_AUTO_REPLY_SUBJECTS: Final = (
    "auto:", "automatic reply:", "autoreply:", "auto-reply:", "auto reply:",
    "out of office:", "out of office reply", "out of office autoreply",
    "automatische antwort:", "abwesenheitsnotiz:", "réponse automatique", "respuesta automática",
    "risposta automatica", "automatisch antwoord", "autosvar:", "automaattinen vastaus",
    "automatyczna odpowiedź", "автоматический ответ", "automatická odpověď", "otomatik yanıt",
    # Exchange's "Automatic reply:" and its 2003 "Out of Office AutoReply:" in more of the
    # languages it ships, also as sent without their accents.
    "automatisk svar", "automatiskt svar", "resposta automática", "odpowiedź automatyczna",
    "automatikus válasz", "automātiskā atbilde", "automatiska atbilde", "ārpus biroja",
    "arpus biroja", "automatinis atsakymas", "automaatne vastus", "automatski odgovor",
    "samodejni odgovor", "automatická odpoveď", "αυτόματη απάντηση", "автоматична відповідь",
    "自动回复", "自動回覆", "自動応答",
)  # fmt: skip
# A Content-Type is read this far: its type and report-type come first in practice.
_MAX_CONTENT_TYPE_CHARS: Final = 1024
# Subjects are read this far for the phrases above: they stand at the start.
_MAX_SUBJECT_CHARS: Final = 200
_REPORT_TYPE: Final = re.compile(r'report-type\s*=\s*"?([a-z0-9._-]{1,40})')


def _header_values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    wanted = name.lower()
    return [value.strip() for key, value in headers if key.lower() == wanted]


def auto_submitted(email: ParsedEmail) -> tuple[bool, str | None, tuple[str, ...]]:
    """Whether a machine wrote this email, why, and the addresses a bounce reports.

    Signals, first match wins for the reason: a delivery-status report (multipart/report,
    RFC 3464) or a bounce whose failed addresses flufl.bounce finds (``dsn``); another
    report (``report:feedback-report``, ARF; ``report:disposition-notification``, a read
    receipt); ``Auto-Submitted`` other than ``no`` (RFC 3834); ``Precedence: auto_reply``;
    ``X-Autoreply``/``X-Autorespond``; ``X-Auto-Response-Suppress`` (Exchange sets it on its
    own automatic replies); a MAILER-DAEMON or postmaster sender (a bounce whose addresses
    did not parse); an empty From ``<>`` (``from:empty``); an empty Return-Path ``<>`` (the
    null sender of bounces and auto-replies). ``Precedence: bulk|junk`` alone is not a
    signal (``bulk`` says it), but a bounce found in such an email is.
    """
    pairs = list(email.headers)
    report = _report_type(pairs)
    return_paths = _header_values(pairs, "Return-Path")
    null_sender = any(value.replace(" ", "") in ("<>", "") for value in return_paths)
    daemon = _daemon_sender(email)
    null_from = (email.from_address or "").strip() == "<>"
    precedence = {value.lower() for value in _header_values(pairs, "Precedence")}
    # Worth a look for failed addresses; short of a delivery-status report, the email is
    # flagged "dsn" only when some are found. Bounce generators, and list managers passing
    # bounces on, mark them bulk or junk (and so do lists people write to). A disposition
    # report can be a bounce (Dovecot rejects with one: "deleted", quota exceeded); a spam
    # complaint names the complainer, who did not bounce.
    looks_bounced = report != "feedback-report" and (
        report is not None
        or null_sender
        or null_from
        or _daemon_named(email)  # a MAILER-DAEMON or postmaster sender among them
        or _daemon_return_path(return_paths)
        or _bounce_subject(email.subject)
        or not precedence.isdisjoint(_PRECEDENCE_BOUNCE)
    )
    bounced = bounced_addresses(email) if looks_bounced else ()
    if report == "delivery-status" or bounced:
        return True, "dsn", bounced
    reason = f"report:{report}" if report is not None else _rfc3834_reason(pairs)
    if reason is None and _auto_reply_subject(email.subject):
        reason = "subject:auto-reply"
    if reason is None and daemon is not None:
        reason = f"sender:{daemon}"
    if reason is None and null_from:
        reason = "from:empty"
    if reason is None and null_sender:
        reason = "return-path:empty"
    return reason is not None, _cut(reason), ()


def bulk(email: ParsedEmail) -> tuple[bool, str | None]:
    """Whether this email came through a list or a bulk sender, and why: ``Precedence:
    bulk|list|junk``, else the first of ``List-Id``, ``List-Post``, ``List-Unsubscribe``
    that is present and not empty."""
    pairs = list(email.headers)
    for value in _header_values(pairs, "Precedence"):
        if value.lower() in _PRECEDENCE_BULK:
            return True, _cut(f"precedence:{value.lower()}")
    for name in _LIST_HEADERS:
        if any(_header_values(pairs, name)):
            return True, name.lower()
    return False, None


def _cut(reason: str | None) -> str | None:
    return reason[:_MAX_REASON_CHARS] if reason is not None else None


def _report_type(pairs: list[tuple[str, str]]) -> str | None:
    """The report-type of a multipart/report email (``unknown`` when it names none), else
    None. The first Content-Type is the one a reader goes by."""
    values = _header_values(pairs, "Content-Type")
    content_type = values[0][:_MAX_CONTENT_TYPE_CHARS].lower() if values else ""
    if not content_type.startswith("multipart/report"):
        return None
    match = _REPORT_TYPE.search(content_type)
    return match.group(1) if match else "unknown"


def _daemon_sender(email: ParsedEmail) -> str | None:
    """``mailer-daemon`` or ``postmaster`` when the From address is theirs."""
    local = (email.from_address or "").rpartition("@")[0] or (email.from_address or "")
    local = local.strip().lower()
    return local if local in _DAEMONS else None


def _daemon_named(email: ParsedEmail) -> bool:
    # Worth a look for failed addresses ("Mail Delivery Subsystem <mailer-daemon+x@...>"),
    # but not reason enough to flag the email when none are found.
    sender = f"{email.from_name or ''} {email.from_address or ''}".lower()
    return "mailer-daemon" in sender or "postmaster" in sender


def _daemon_return_path(return_paths: list[str]) -> bool:
    # A relay that rewrote the null sender of a bounce to its own daemon's address.
    return any(value.strip("<> ").rpartition("@")[0].lower() in _DAEMONS for value in return_paths)


def _bounce_subject(subject: str | None) -> bool:
    lower = (subject or "")[:_MAX_SUBJECT_CHARS].lower()
    return any(phrase in lower for phrase in _BOUNCE_SUBJECTS)


def _auto_reply_subject(subject: str | None) -> bool:
    lower = (subject or "")[:_MAX_SUBJECT_CHARS].lower().lstrip("[ ")
    return lower.startswith(_AUTO_REPLY_SUBJECTS)


def _rfc3834_reason(pairs: list[tuple[str, str]]) -> str | None:
    for value in _header_values(pairs, "Auto-Submitted"):
        keyword = value.split(";")[0].strip().lower()
        if keyword and keyword != "no":
            return f"auto-submitted:{keyword}"
    for value in _header_values(pairs, "Precedence"):
        if value.lower() in _PRECEDENCE_AUTO:
            return f"precedence:{value.lower()}"
    if _header_values(pairs, "X-Autoreply") or _header_values(pairs, "X-Autorespond"):
        return "x-autoreply"
    suppress = _header_values(pairs, "X-Auto-Response-Suppress")
    if any(value.lower() not in _SUPPRESS_NONE for value in suppress):
        return "x-auto-response-suppress"
    return None
