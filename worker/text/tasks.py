"""Celery tasks of attachment text: thin shells around ``worker.text.service``.

``kave.text.convert`` (queue ``KAVE_TEXT_QUEUE_NAME``, served by the text workers) gives
one content's pending rows their text; ``kave.text.sweep`` (Celery beat) queues the
contents still pending after a while and releases stranded held hand-offs, which is how
a conversion survives a lost message or a killed text worker. The ingest task queues
conversions by name after its commit (:func:`queue_conversions`), best effort.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from celery import current_app, shared_task

from shared.contract import TEXT_CONVERT_TASK, TEXT_SWEEP_TASK
from shared.settings import Settings
from worker.interrupts import INTERRUPTS
from worker.resources import WorkerContext
from worker.task_base import KaveTask
from worker.text import service
from worker.text.bounds import Bounds
from worker.text.convert import Limits

log = structlog.get_logger(__name__)


def limits(settings: Settings) -> Limits:
    return Limits(
        bounds=Bounds(
            max_bytes=settings.text_max_bytes,
            max_expanded_bytes=settings.text_max_expanded_bytes,
            max_expansion_ratio=settings.text_max_expansion_ratio,
            max_zip_members=settings.text_max_zip_members,
            max_pages=settings.text_max_pages,
        ),
        timeout_seconds=settings.text_timeout_seconds,
        memory_bytes=settings.text_memory_mib * 1024 * 1024,
        max_pages=settings.text_max_pages,
        max_characters=settings.text_max_characters,
    )


def text_context(context: WorkerContext) -> service.TextContext:
    from worker.handoff.tasks import schedule_dispatch

    return service.TextContext(
        session_factory=context.ingest.session_factory,
        object_store=context.ingest.object_store,
        limits=limits(context.settings),
        schedule_dispatch=schedule_dispatch,
    )


def queue_conversions(shas: Iterable[str], settings: Settings) -> None:
    """Queue the conversion of each content (after the commit that stored its rows).

    Best effort: a content not queued here (Redis down, this process killed) stays
    pending, and the sweep queues it once it is older than ``text_sweep_after_seconds``.
    """
    if not settings.text_enabled:
        return
    try:
        for sha256 in sorted(set(shas)):
            send_conversion(sha256, settings.text_queue_name)
    except INTERRUPTS:
        raise
    except Exception as exc:
        log.warning("text.queue_deferred", error_type=type(exc).__name__)


def send_conversion(sha256: str, queue: str) -> None:
    current_app.send_task(
        TEXT_CONVERT_TASK,
        kwargs={"sha256": sha256},
        queue=queue,
        argsrepr="()",
        kwargsrepr=f"sha256={sha256[:12]}",
    )


@shared_task(name=TEXT_CONVERT_TASK, bind=True, base=KaveTask)
def convert_text(self: KaveTask, sha256: str) -> str:
    structlog.contextvars.bind_contextvars(sha256=sha256[:12])
    return service.convert_content(text_context(self.context), sha256)


# Housekeeping on beat's timer: no task events (see worker.task_base), so Flower lists mail.
@shared_task(name=TEXT_SWEEP_TASK, bind=True, base=KaveTask, send_events=False)
def sweep_text(self: KaveTask) -> int:
    settings = self.context.settings
    if not settings.text_enabled:
        return 0
    ctx = text_context(self.context)
    with ctx.session_factory() as session, session.begin():
        shas = service.pending_contents(session, settings.text_sweep_after_seconds)
        released = service.release_stranded(session)
    for dispatch_id in released:
        ctx.schedule_dispatch(dispatch_id)
    for sha256 in shas:
        send_conversion(sha256, settings.text_queue_name)
    indexed = service.index_unindexed(ctx)
    if shas or released or indexed:
        log.info("text.swept", queued=len(shas), released=len(released), indexed=indexed)
    return len(shas)
