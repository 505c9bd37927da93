"""Annotated dependency aliases of the management API, so routes declare what they need
in one word.

Dependencies that only read app state are ``async def``: FastAPI runs plain functions in
its thread pool, which costs more than the lookup itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker

from api.auth import TOKEN_PATH, InvalidTokenError, decode_access_token, get_user
from shared.models import User
from shared.objectstore import ObjectStore
from shared.settings import Settings
from shared.web.errors import ForbiddenError, UnauthorizedError
from shared.web.request_id import current_request_id


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_request_id() -> str:
    return current_request_id()


SettingsDep = Annotated[Settings, Depends(get_settings)]
RequestIdDep = Annotated[str, Depends(get_request_id)]


# --- sessions, stores, the current user ----------------------------------------------

_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_PATH, auto_error=False)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def get_session(request: Request) -> Iterator[Session]:
    """A database session for one request (sync: routes using it run in the threadpool)."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    with factory() as session:
        yield session


async def get_object_store(request: Request) -> ObjectStore:
    store: ObjectStore = request.app.state.object_store
    return store


async def get_producer(request: Request) -> Celery:
    producer: Celery = request.app.state.producer
    return producer


SessionDep = Annotated[Session, Depends(get_session)]


def get_current_user(
    settings: SettingsDep, session: SessionDep, token: Annotated[str | None, Depends(_bearer)]
) -> User:
    """The enabled user a valid bearer token was issued to; 401 otherwise."""
    if not token:
        raise UnauthorizedError(
            f"missing bearer token: get one from POST {TOKEN_PATH} and send it as "
            "'Authorization: Bearer <token>'",
            headers=_CHALLENGE,
        )
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
    return user


ObjectStoreDep = Annotated[ObjectStore, Depends(get_object_store)]
ProducerDep = Annotated[Celery, Depends(get_producer)]
CurrentUser = Annotated[User, Depends(get_current_user)]


def get_admin_user(user: CurrentUser) -> User:
    """The current user if it is an admin (may erase data); 403 otherwise."""
    if not user.is_admin:
        raise ForbiddenError("erasing data needs an admin user (kave users create --admin NAME)")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]
