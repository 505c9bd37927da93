"""Who may call the management API: users with a role, and scoped API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    String,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base


class User(Base):
    """Someone who may call the management API (``kave users create NAME``), in a role
    (``shared.roles``).

    Only a bcrypt hash of the password is kept. A disabled user keeps its row (and the
    name stays taken) but can neither get a token nor use one it already has.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(128))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # What it may do (api/access): admin, operator or reader; ``kave users create --role``.
    role: Mapped[str] = mapped_column(String(16), default="operator", server_default="operator")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ApiKey(Base):
    """A bearer key for an agent (``kave keys create``): read-only, optionally limited to
    mailboxes (envelope-recipient patterns such as ``support+*@example.com``).

    Only the sha256 of the key is kept (keys are 256 random bits, so a slow hash adds
    nothing); ``prefix`` identifies it in listings. Revoked or expired keys stay, refused.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(16))
    mailboxes: Mapped[list[Any]] = mapped_column(default=list)
    rate_limit: Mapped[str | None] = mapped_column(String(32))  # None: KAVE_RATE_LIMIT_API
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
