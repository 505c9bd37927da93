"""What the agent-surface tests share: a real uvicorn API with a known JWT key, and the
callers of every kind (users in each role, agent keys with and without mailboxes, revoked
and expired keys), made directly in the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.auth import create_access_token, hash_password
from shared import roles
from shared.agent_keys import key_sha256, new_key, shown_prefix
from shared.models import ApiKey, User
from shared.settings import Settings
from tests.services import api_process, derive_settings

SUPPORT = "support+*@example.com"


@dataclass(frozen=True)
class Caller:
    name: str
    token: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@pytest.fixture(scope="session")
def agent_settings(base_settings: Settings) -> Settings:
    return derive_settings(
        base_settings,
        queue_name=f"kave-agents-{uuid.uuid4().hex[:8]}",
        jwt_secret_key="agent-tests-" + uuid.uuid4().hex,
        rate_limit_api="100000/minute",
        stream_poll_seconds=0.1,
        stream_heartbeat_seconds=1,
    )


@pytest.fixture(scope="session")
def agent_api(agent_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a real uvicorn API on the agent settings, one per test session
    (its start is most of the agent tests' time)."""
    log_path = Path(tmp_path_factory.mktemp("agent-api")) / "api.log"
    with api_process(agent_settings, log_path) as base:
        yield base


def make_user(engine: Engine, settings: Settings, role: str) -> Caller:
    with Session(engine, expire_on_commit=False) as session:
        user = User(
            name=f"{role}-{uuid.uuid4().hex[:6]}",
            password_hash=hash_password("unused but long enough 1", rounds=4),
            role=role,
        )
        session.add(user)
        session.commit()
    token = create_access_token(user.id, key=settings.jwt_key(), lifetime_seconds=600).token
    return Caller(role, token)


def make_key(
    engine: Engine,
    name: str,
    *,
    mailboxes: tuple[str, ...] = (),
    revoked: bool = False,
    expires_in: timedelta | None = None,
    rate_limit: str | None = None,
) -> Caller:
    key = new_key()
    now = datetime.now(UTC)
    with Session(engine) as session:
        session.add(
            ApiKey(
                name=f"{name}-{uuid.uuid4().hex[:6]}",
                key_sha256=key_sha256(key),
                prefix=shown_prefix(key),
                scope=roles.READ_SCOPE,
                mailboxes=list(mailboxes),
                rate_limit=rate_limit,
                revoked_at=now if revoked else None,
                expires_at=now + expires_in if expires_in is not None else None,
            )
        )
        session.commit()
    return Caller(name, key)


def all_callers(engine: Engine, settings: Settings) -> dict[str, Caller]:
    """Every kind of caller, by name."""
    callers = [
        Caller("anonymous", None),
        Caller("garbage", "not-a-token"),
        *(make_user(engine, settings, role) for role in roles.ROLES),
        make_key(engine, "read-key"),
        make_key(engine, "support-key", mailboxes=(SUPPORT,)),
        make_key(engine, "revoked-key", revoked=True),
        make_key(engine, "expired-key", expires_in=timedelta(seconds=-1)),
    ]
    return {caller.name: caller for caller in callers}
