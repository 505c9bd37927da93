"""Agent keys: how one is made, recognised and looked up (``kave keys``, api/access).

A key is ``kave_`` followed by 43 URL-safe characters (32 random bytes). Only its sha256
is stored: a key has 256 bits of entropy, so a slow password hash would only slow every
request without making a stolen table any easier to reverse. The first characters after
the prefix are kept in the clear (``prefix``) so a listing can say which key is which.
Mailbox patterns are envelope recipients in which ``*`` stands for any run of characters
(``support+*@example.com``), compared without regard to case.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

KEY_PREFIX: Final = "kave_"
_SHOWN_CHARACTERS: Final = 8
_PATTERN: Final = re.compile(r"^[^\s\x00]{1,254}$")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def is_agent_key(token: str) -> bool:
    """Agent keys and JWTs are told apart by the prefix (a JWT starts with ``eyJ``)."""
    return token.startswith(KEY_PREFIX)


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def shown_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + _SHOWN_CHARACTERS]


def check_mailbox_pattern(pattern: str) -> str:
    """The pattern, lower-cased, if usable; ValueError saying why not."""
    if not _PATTERN.match(pattern) or "@" not in pattern:
        raise ValueError(
            f"mailbox pattern {pattern!r} must be an address, with * for any characters, "
            "e.g. support+*@example.com"
        )
    return pattern.lower()


def like_pattern(pattern: str) -> str:
    """A mailbox pattern as a SQL LIKE pattern (escape character ``\\``)."""
    escaped = pattern.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")
