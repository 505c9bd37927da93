"""Annotated dependency aliases of the management API, so routes declare what they need
in one word.

Dependencies that only read app state are ``async def``: FastAPI runs plain functions in
its thread pool, which costs more than the lookup itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from shared.objectstore import ObjectStore
from shared.settings import Settings
from shared.web.request_id import current_request_id


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_request_id() -> str:
    return current_request_id()


SettingsDep = Annotated[Settings, Depends(get_settings)]
RequestIdDep = Annotated[str, Depends(get_request_id)]


# --- sessions and stores (who is calling: api/access) ---------------------------------


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


ObjectStoreDep = Annotated[ObjectStore, Depends(get_object_store)]
ProducerDep = Annotated[Celery, Depends(get_producer)]
