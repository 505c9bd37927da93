"""The caller of an API request: a user (JWT from ``POST /api/v1/auth/token``) or an agent
key (``kave keys create``), authenticated and counted against its own rate limit.

Keys are looked up on every request, so revoking one (``kave keys revoke``) takes effect
on the next request; so do expiry and a disabled user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import TOKEN_PATH, InvalidTokenError, decode_access_token, get_user
from api.deps import SessionDep, SettingsDep
from api.ratelimit import count_api_request
from shared import roles
from shared.agent_keys import is_agent_key, key_sha256
from shared.models import ApiKey
from shared.settings import Settings, parse_rate
from shared.web.errors import UnauthorizedError

_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_PATH, auto_error=False)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. ``mailboxes`` is empty when the caller may read every mailbox."""

    kind: str  # "user" or "key"
    id: int
    name: str
    role: str  # shared.roles: a key's is its scope's (read -> reader)
    mailboxes: tuple[str, ...] = ()
    rate_limit: str | None = None  # None: KAVE_RATE_LIMIT_API

    @property
    def actor(self) -> str:
        """How logs and records name the caller."""
        return f"api:{self.kind}:{self.id}"

    @property
    def bucket(self) -> str:
        return f"{self.kind}-{self.id}"


def authenticate(session: Session, settings: Settings, token: str | None) -> Principal:
    """The principal ``token`` stands for; :class:`UnauthorizedError` otherwise."""
    if not token:
        raise UnauthorizedError(
            f"missing bearer token: get one from POST {TOKEN_PATH} (users) or "
            "`kave keys create` (agents), and send it as 'Authorization: Bearer <token>'",
            headers=_CHALLENGE,
        )
    if is_agent_key(token):
        return _key_principal(session, token)
    try:
        user_id = decode_access_token(token, key=settings.jwt_key())
    except InvalidTokenError as exc:
        raise UnauthorizedError(
            f"invalid token ({exc}); get a new one from POST {TOKEN_PATH}", headers=_CHALLENGE
        ) from None
    user = get_user(session, user_id)
    if user is None or user.disabled:
        raise UnauthorizedError(
            "the token's user is disabled or no longer exists", headers=_CHALLENGE
        )
    return Principal(kind="user", id=user.id, name=user.name, role=user.role)


def _key_principal(session: Session, token: str) -> Principal:
    key = session.scalars(
        select(ApiKey).where(ApiKey.key_sha256 == key_sha256(token))
    ).one_or_none()
    if key is None:
        raise UnauthorizedError("unknown API key", headers=_CHALLENGE)
    if key.revoked_at is not None:
        raise UnauthorizedError(f"API key {key.name!r} was revoked", headers=_CHALLENGE)
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        raise UnauthorizedError(f"API key {key.name!r} has expired", headers=_CHALLENGE)
    role = roles.READER if key.scope == roles.READ_SCOPE else ""
    return Principal(
        kind="key",
        id=key.id,
        name=key.name,
        role=role,
        mailboxes=tuple(str(pattern) for pattern in key.mailboxes),
        rate_limit=key.rate_limit,
    )


def _authenticate(
    session: SessionDep, settings: SettingsDep, token: Annotated[str | None, Depends(_bearer)]
) -> Principal:
    # Sync: the lookup blocks, so FastAPI runs it in the thread pool.
    return authenticate(session, settings, token)


async def current_principal(
    request: Request, principal: Annotated[Principal, Depends(_authenticate)]
) -> Principal:
    """The authenticated caller, counted against its rate limit (429 past it)."""
    rate = parse_rate(principal.rate_limit) if principal.rate_limit else None
    await count_api_request(request, principal.bucket, rate)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def still_valid(session: Session, principal: Principal) -> bool:
    """Whether the caller may still read: its key unrevoked and unexpired, or its user
    enabled. Long requests (the live feed) ask this again as they run."""
    if principal.kind == "key":
        key = session.get(ApiKey, principal.id)
        return (
            key is not None
            and key.revoked_at is None
            and (key.expires_at is None or key.expires_at > datetime.now(UTC))
        )
    user = get_user(session, principal.id)
    return user is not None and not user.disabled
