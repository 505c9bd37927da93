"""Retention, erasure and audit records."""

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


class ObjectDeletion(Base):
    """An object whose last row reference was deleted, waiting to be removed.

    Written in the same transaction as the row deletion (retention or erasure), so a
    crash between the rows and the objects leaves a to-do list, not an orphan: the next
    ``kave purge``, ``kave erase`` or ``kave audit --repair`` finishes it. The object is
    removed only if no row names the key again by then. Once removed, the entry stays a
    while as a tombstone (``object_deleted_at``): a worker that uploaded the same content
    just before, and commits rows naming it just after, finds it and uploads it again.
    """

    __tablename__ = "object_deletions"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    object_deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Queued by an erasure: removed by the next drain whatever the object's age (no
    # grace), since no row may keep erased content alive (shared/lifecycle/objects.py).
    without_grace: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")


class Erasure(Base):
    """The record of one erasure request, without the erased content.

    ``selector_sha256`` is the sha256 of the normalised selector (a lower-cased address,
    or ``email:<id>``): it proves what was asked for to whoever already knows it, and
    tells nobody else anything.
    """

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(String(128))
    selector_kind: Mapped[str] = mapped_column(String(16))
    selector_sha256: Mapped[str] = mapped_column(String(64), index=True)
    counts: Mapped[dict[str, Any]] = mapped_column()
    objects_done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditRun(Base):
    """The counts of one ``kave audit`` run; the newest feeds the Prometheus gauge."""

    __tablename__ = "audit_runs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    finished_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    counts: Mapped[dict[str, Any]] = mapped_column()
    repaired: Mapped[dict[str, Any]] = mapped_column()
