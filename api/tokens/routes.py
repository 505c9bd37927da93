"""``POST /api/v1/auth/token``: a user name and password for a bearer token."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from api.auth import (
    PasswordTooLongError,
    check_password_length,
    create_access_token,
    get_user_by_name,
    verify_password,
)
from api.deps import SessionDep, SettingsDep
from api.openapi import error_responses
from api.ratelimit import count_login_attempt, limit_token_requests
from api.tokens.schemas import TokenOut
from shared.models import User
from shared.web.errors import UnauthorizedError

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/token",
    summary="Get an access token",
    description=(
        "OAuth2 password flow: send `username` and `password` form-encoded (as the docs' "
        "Authorize button does) and get a bearer token for every other `/api/v1` route. "
        "Users are created with `kave users create NAME`. Passwords longer than 72 bytes "
        "are refused (bcrypt cannot tell them apart). Limited per client address "
        "(`KAVE_RATE_LIMIT_TOKEN`) and per account name on failed logins "
        "(`KAVE_RATE_LIMIT_LOGIN_FAILURES`): past either, the answer is 429 with "
        "`Retry-After`, even for the right password."
    ),
    response_model=TokenOut,
    dependencies=[Depends(limit_token_requests)],
    responses=error_responses(401, 422, 429, 503),
)
async def issue_token(
    *,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form(min_length=1, max_length=64, pattern=r"^[^\x00]*$")],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenOut:
    try:
        check_password_length(password)
    except PasswordTooLongError as exc:
        raise RequestValidationError(
            [{"loc": ("body", "password"), "msg": str(exc), "type": "value_error"}]
        ) from None
    attempt = await count_login_attempt(request, username)
    # The query and bcrypt block: in the thread pool, not on the event loop.
    user, password_ok = await run_in_threadpool(_check_credentials, session, username, password)
    if user is None or not password_ok:
        log.warning("auth.token_refused", reason="credentials")
        raise UnauthorizedError(
            "wrong user name or password", headers={"WWW-Authenticate": "Bearer"}
        )
    if user.disabled:
        log.warning("auth.token_refused", reason="disabled", user=user.name)
        raise UnauthorizedError(
            f"user {user.name!r} is disabled", headers={"WWW-Authenticate": "Bearer"}
        )
    await attempt.succeeded()
    token = create_access_token(
        user.id, key=settings.jwt_key(), lifetime_seconds=settings.access_token_lifetime_seconds
    )
    log.info("auth.token_issued", user=user.name, expires_in=token.expires_in)
    return TokenOut(access_token=token.token, expires_in=token.expires_in)


def _check_credentials(session: Session, username: str, password: str) -> tuple[User | None, bool]:
    user = get_user_by_name(session, username)
    # Checked even for unknown users, so the time taken does not reveal which names exist.
    return user, verify_password(password, user.password_hash if user else None)
