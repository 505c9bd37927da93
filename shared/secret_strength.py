"""Is this value usable as a secret? Pure checks, no I/O, never any echo of the value.

``weakness(value, min_length=...)`` says why a password or key is not fit for
production (empty, a known placeholder, too short, too few distinct characters, a
repeated pattern, a simple sequence), or ``None`` when none of the rules fires. The
reasons name the rule, never the value, so that they can go into an error message or
a log line. ``url_password`` reads the password part of a service URL
(``postgresql://kave:PASSWORD@db/kave``, ``redis://:PASSWORD@redis:6379/0``).

The rules catch what people actually put in config files (``change-me``, ``admin``,
``xxxxxxxx``, ``your-secret-here``, ``aaaaaaaa...``, ``abcd1234...``). They are not an
entropy estimator: a value that passes them is only "not obviously guessable", which is
why the messages point at a generator instead of at a rule to satisfy.
"""

from __future__ import annotations

import itertools
import re
from urllib.parse import unquote, urlsplit

# The standard advice; every refusal repeats it.
GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"

# Minimum lengths: a password of an internal service (PostgreSQL, Redis, S3, Flower),
# and the key that signs the management API's tokens (HS256 wants at least 256 bits).
PASSWORD_MIN_LENGTH = 16
SIGNING_KEY_MIN_LENGTH = 32

# The whole value (lower-cased) is one of these: defaults of the services we run and
# the usual words of examples (those that contain a marker below are not repeated here).
_PLACEHOLDER_VALUES = frozenset(
    {
        "admin",
        "administrator",
        "changeit",
        "default",
        "guest",
        "letmein",
        "minio",
        "none",
        "null",
        "pass",
        "passwd",
        "postgres",
        "redis",
        "root",
        "sample",
        "test",
        "testing",
        "todo",
        "user",
    }
)
# The value (lower-cased) contains one of these anywhere. Each is long enough that a
# random value contains it by chance with negligible probability.
_PLACEHOLDER_MARKERS = (
    "change-me",
    "change_me",
    "changeme",
    "changethis",
    "replace-me",
    "replace_me",
    "replaceme",
    "placeholder",
    "your-",
    "your_",
    "yourpassword",
    "yoursecret",
    "example",
    "password",
    "secret",
    "minioadmin",
    "insecure",
    "dummy",
    "qwerty",
    "123456",
    "xxxxx",
)
# "P@ssw0rd", "s3cr3t", "adm1n" are the same words.
_LEET = str.maketrans("@4310$5", "aaeioss")
# "<your password>", "${POSTGRES_PASSWORD}" (a variable that was never substituted).
_PLACEHOLDER_SHAPES = re.compile(r"^<.*>$|\$\{\w")
# Two neighbouring characters count as "in sequence" when equal or one code point apart
# ("aa", "ab", "ba", "12"); a value mostly made of such pairs is a run like "abcd1234".
_SEQUENCE_SHARE = 0.75
_UNIX_SOCKET_SCHEMES = frozenset({"unix", "redis+socket", "socket"})


def is_placeholder(value: str) -> bool:
    """Whether the value is, or obviously contains, a stand-in for a real secret."""
    lowered = value.strip().lower()
    if _PLACEHOLDER_SHAPES.search(lowered):
        return True
    return any(
        text in _PLACEHOLDER_VALUES or any(marker in text for marker in _PLACEHOLDER_MARKERS)
        for text in {lowered, lowered.translate(_LEET)}
    )


def min_distinct_characters(min_length: int) -> int:
    """Distinct characters a secret of at least ``min_length`` characters must have.

    6 for a 16-character password, 8 for a 32-character key: a random hex value of
    that length falls below it about once in 20,000 draws; ``aaaabbbbaaaabbbb`` always.
    """
    return max(6, min_length // 4)


def _repeats_a_pattern(value: str) -> bool:
    length = len(value)
    return any(
        length % period == 0 and value == value[:period] * (length // period)
        for period in range(1, length // 2 + 1)
    )


def _is_a_sequence(value: str) -> bool:
    lowered = value.lower()
    pairs = list(itertools.pairwise(lowered))
    if not pairs:
        return False
    in_sequence = sum(abs(ord(a) - ord(b)) <= 1 for a, b in pairs)
    return in_sequence / len(pairs) >= _SEQUENCE_SHARE


def weakness(value: str | None, *, min_length: int) -> str | None:
    """Why ``value`` is not a usable secret, or ``None``. The reason never quotes it."""
    if value is None or not value.strip():
        return "is empty"
    needed = min_distinct_characters(min_length)
    rules = (
        (is_placeholder, "is a placeholder (a well-known or example value)"),
        (lambda v: len(v) < min_length, f"is too short (at least {min_length} characters)"),
        (lambda v: len(set(v)) < needed, f"has too few different characters (at least {needed})"),
        (_repeats_a_pattern, "repeats a short pattern"),
        (_is_a_sequence, "is a simple sequence of characters"),
    )
    return next((reason for fails, reason in rules if fails(value)), None)


def url_password(url: str) -> str | None:
    """The (percent-decoded) password in a service URL; ``None`` when it has none."""
    try:
        password = urlsplit(url).password
    except ValueError:  # e.g. an invalid port; the URL's own user reports that
        return None
    return None if password is None else unquote(password)


def is_unix_socket_url(url: str) -> bool:
    """Whether the URL reaches its service through a Unix socket (``unix:///run/redis.sock``).

    Such a socket is guarded by file permissions, so a password is optional there.
    """
    return urlsplit(url).scheme.lower() in _UNIX_SOCKET_SCHEMES
