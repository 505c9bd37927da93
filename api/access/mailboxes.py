"""Narrowing reads to the mailboxes of a scoped key: the envelope recipient must match
one of the key's patterns (``*`` any characters, any case). Emails without an envelope
recipient belong to no mailbox, so a scoped key never sees them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import ColumnElement, func

from api.access.principal import Principal
from shared.agent_keys import like_pattern
from shared.models import Email


def visible_emails(principal: Principal) -> ColumnElement[bool] | None:
    """The condition on ``emails`` rows the caller may see; None: every row."""
    if not principal.mailboxes:
        return None
    recipient = func.lower(Email.envelope_recipient)
    return sa.or_(
        *(recipient.like(like_pattern(pattern), escape="\\") for pattern in principal.mailboxes)
    )


def may_see(principal: Principal, email: Email) -> bool:
    """Whether the caller may see ``email`` (the same rule as :func:`visible_emails`)."""
    if not principal.mailboxes:
        return True
    recipient = (email.envelope_recipient or "").lower()
    return email.envelope_recipient is not None and any(
        _glob_match(pattern.lower(), recipient) for pattern in principal.mailboxes
    )


def _glob_match(pattern: str, value: str) -> bool:
    # fnmatch would also read [] and ? as wildcards; here only * is one.
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == value
    if not value.startswith(parts[0]) or not value.endswith(parts[-1]):
        return False
    position = len(parts[0])
    end = len(value) - len(parts[-1])
    for part in parts[1:-1]:
        found = value.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return position <= end
