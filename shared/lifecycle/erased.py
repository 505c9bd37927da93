"""Deliveries whose archive was removed on purpose, and the refusal to process them again.

An erasure removes a delivery's archive (``archive_removed_reason = 'erasure'``) because
it holds erased content; retention removes old ones. Either way nothing may bring the
delivery back: a replay, a retried or redelivered task, reconciliation and reprocessing
all ask :func:`refusal` first and stop with its message. For an erasure, whatever a
worker that was already holding the body may have written back meanwhile is removed
again by :func:`remove_erased_archive`.
"""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import select

from shared.lifecycle.objects import DrainResult, SessionFactory, drain, queue_deletions
from shared.models import Delivery
from shared.objectstore import ObjectStore

ERASURE = "erasure"


class ArchiveRemovedError(Exception):
    """The delivery's archive was removed on purpose: it cannot be processed again.
    The message names the delivery, when and why, never content."""


def refusal(delivery: Delivery, action: str) -> str | None:
    """Why ``delivery`` cannot be ``action`` (e.g. "replayed"), or None when it can."""
    if delivery.archive_removed_at is None:
        return None
    when = f"{delivery.archive_removed_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    if delivery.archive_removed_reason == ERASURE:
        return (
            f"delivery {delivery.id} was erased on request (kave erase) on {when}: its "
            f"archive is gone for good and it cannot be {action}"
        )
    return (
        f"the archive of delivery {delivery.id} was removed by the retention policy on "
        f"{when}: it cannot be {action}"
    )


def check_processable(session_factory: SessionFactory, delivery_id: str, action: str) -> None:
    """Raise :class:`ArchiveRemovedError` if the delivery's archive was removed."""
    with session_factory() as session:
        delivery = session.get(Delivery, delivery_id)
        message = refusal(delivery, action) if delivery is not None else None
    if message is not None:
        raise ArchiveRemovedError(message)


def is_erased(session_factory: SessionFactory, delivery_id: str) -> bool:
    with session_factory() as session:
        reason = session.scalar(
            select(Delivery.archive_removed_reason).where(Delivery.id == delivery_id)
        )
    return reason == ERASURE


def remove_erased_archive(
    session_factory: SessionFactory, store: ObjectStore, delivery_id: str
) -> DrainResult:
    """Queue the erased delivery's archive key again and drain it at once: a worker that
    held the body when the erasure ran may have written the archive back. The object
    stays only while a delivery that was not erased (a later copy of the same batch)
    names it."""
    with session_factory() as session, session.begin():
        key = session.scalar(select(Delivery.archive_key).where(Delivery.id == delivery_id))
        if key is None:
            return DrainResult()
        queue_deletions(session, [key], without_grace=True)
    return drain(session_factory, store, grace_seconds=0, keys=[key], wait_for_workers=True)
