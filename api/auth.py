"""Passwords and access tokens of the management API.

bcrypt is used directly: passlib is unmaintained and broken with bcrypt 5, which raises
on passwords longer than 72 bytes instead of silently truncating them. Such passwords are
refused with a clear message; truncating would make every password that shares its first
72 bytes match.

A new password must also pass the production secret-strength rules
(shared/secret_strength.py: length, placeholders, variety, patterns, sequences) and must
not contain its user's name: the token endpoint is online, but a guessable password
falls to a handful of tries spread over time and addresses.

Tokens are JWTs signed with HS256 (python-jose). Decoding always pins the algorithm, so a
token whose header says ``none``, ``RS256`` or anything else is refused whatever it carries,
and ``sub``, ``iat`` and ``exp`` are required. ``sub`` is the user's id, not its name: a
user deleted and created again under the same name does not inherit old tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import bcrypt
from jose import JWTError, jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import User
from shared.secret_strength import PASSWORD_MIN_LENGTH, weakness

TOKEN_PATH = "/api/v1/auth/token"  # noqa: S105 - a URL path, not a secret
JWT_ALGORITHM = "HS256"
# bcrypt reads at most this many bytes of a password; bcrypt 5 raises beyond it.
MAX_PASSWORD_BYTES = 72
BCRYPT_ROUNDS = 12
_DECODE_OPTIONS = {"require_exp": True, "require_iat": True, "require_sub": True}


class PasswordTooLongError(ValueError):
    """The password is longer than bcrypt can hash."""


class WeakPasswordError(ValueError):
    """The password is too easy to guess; the message says which rule it fails."""


class InvalidTokenError(ValueError):
    """The token is malformed, forged, expired or incomplete; the message says which."""


def check_password_length(password: str) -> None:
    size = len(password.encode("utf-8"))
    if size > MAX_PASSWORD_BYTES:
        raise PasswordTooLongError(
            f"passwords are limited to {MAX_PASSWORD_BYTES} bytes of UTF-8 "
            f"(bcrypt ignores the rest); this one has {size}"
        )


def check_new_password(password: str, *, user_name: str) -> None:
    """Refuse a password a user is about to be given: :class:`PasswordTooLongError` past
    bcrypt's limit, :class:`WeakPasswordError` when it is guessable. Messages never quote
    the password."""
    check_password_length(password)
    reason = weakness(password, min_length=PASSWORD_MIN_LENGTH)
    if reason is None and len(user_name) >= 3 and user_name.lower() in password.lower():
        reason = "contains the user name"
    if reason is not None:
        raise WeakPasswordError(
            f"the password {reason}; use a passphrase of several random words or a "
            f"random string of at least {PASSWORD_MIN_LENGTH} characters (e.g. from a "
            "password manager, or: python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )


def hash_password(password: str, *, rounds: int = BCRYPT_ROUNDS) -> str:
    check_password_length(password)
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=rounds)).decode("ascii")


@lru_cache(maxsize=1)
def _dummy_hash() -> bytes:
    # Computed on first use, not at import: hashing takes a noticeable fraction of a second.
    return bcrypt.hashpw(b"kave-no-such-user", bcrypt.gensalt(rounds=BCRYPT_ROUNDS))


def verify_password(password: str, password_hash: str | None) -> bool:
    """Whether ``password`` matches; ``None`` (no such user) never matches.

    An unknown user still costs one bcrypt check, so the answer time does not tell an
    attacker which user names exist.
    """
    candidate = password.encode("utf-8")
    if len(candidate) > MAX_PASSWORD_BYTES:
        return False
    target = password_hash.encode("ascii") if password_hash else _dummy_hash()
    try:
        matches = bcrypt.checkpw(candidate, target)
    except ValueError:  # a malformed stored hash matches nothing
        return False
    return matches and password_hash is not None


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_in: int


def create_access_token(
    user_id: int, *, key: str, lifetime_seconds: int, now: float | None = None
) -> AccessToken:
    issued_at = int(now if now is not None else time.time())
    claims = {"sub": str(user_id), "iat": issued_at, "exp": issued_at + lifetime_seconds}
    token = jwt.encode(claims, key, algorithm=JWT_ALGORITHM)
    return AccessToken(token=token, expires_in=lifetime_seconds)


def decode_access_token(token: str, *, key: str) -> int:
    """The user id a valid token was issued to; :class:`InvalidTokenError` otherwise."""
    try:
        claims = jwt.decode(token, key, algorithms=[JWT_ALGORITHM], options=_DECODE_OPTIONS)
    except JWTError as exc:
        # jose's messages name the problem ("Signature has expired.", "The specified alg
        # value is not allowed") and never echo the token or the key.
        raise InvalidTokenError(str(exc).rstrip(".") or "invalid token") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.isascii() or not subject.isdigit():
        raise InvalidTokenError("the token's subject is not a user id")
    return int(subject)


def get_user(session: Session, user_id: int) -> User | None:
    """The user a token names (None once deleted)."""
    return session.get(User, user_id)


def get_user_by_name(session: Session, name: str) -> User | None:
    """The user who logs in with ``name``."""
    return session.scalars(select(User).where(User.name == name)).one_or_none()
