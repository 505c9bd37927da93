"""Celery tasks of the hand-off: thin shells around ``worker.handoff.dispatch``.

``kave.dispatch.publish`` makes one attempt at one dispatch (its own retries are new
messages with a countdown, scheduled by the service once the attempt is recorded);
``kave.dispatch.sweep`` (Celery beat) publishes what is due, which is how a dispatch
survives a lost message or a killed dispatcher.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import current_app, shared_task

from shared.contract import DISPATCH_SWEEP_TASK, DISPATCH_TASK
from worker.handoff import dispatch
from worker.handoff.attempt import DispatchContext
from worker.handoff.outbox import NewDispatch
from worker.interrupts import INTERRUPTS
from worker.resources import WorkerContext, worker_context
from worker.task_base import KaveTask

log = structlog.get_logger(__name__)


def dispatch_context(context: WorkerContext | None = None) -> DispatchContext | None:
    """The hand-off's view of this process's context (``worker.resources``), or None when
    the hand-off is off (no routes file)."""
    context = context or worker_context()
    if context.routes is None:
        return None
    settings = context.settings
    return DispatchContext(
        session_factory=context.ingest.session_factory,
        routes=context.routes,
        send_task=send_handler_task,
        schedule=schedule_dispatch,
        max_attempts=settings.handoff_max_attempts,
        backoff_max_seconds=float(settings.handoff_backoff_max_seconds),
    )


def send_handler_task(name: str, kwargs: dict[str, Any], queue: str) -> None:
    # The platform's workers run the task; its kwargs are ids and the key only. Flower
    # shows the dispatch id (the reprs given here also spare Celery its saferepr).
    current_app.send_task(
        name,
        kwargs=kwargs,
        queue=queue,
        argsrepr="()",
        kwargsrepr=f"dispatch_id={kwargs['dispatch_id']}",
    )


def schedule_dispatch(dispatch_id: int, countdown: float = 0.0) -> None:
    publish_dispatch.apply_async(
        kwargs={"dispatch_id": dispatch_id},
        countdown=countdown,
        kwargsrepr=f"dispatch_id={dispatch_id}",
    )


def hand_off_new(new: list[NewDispatch]) -> None:
    """After a delivery's commits: hand over the dispatches of the emails it stored.

    Best effort: what is not handed over here (Redis down, this process killed) is found
    by the sweep, once due (a claimed row's lease expired).
    """
    ctx = dispatch_context()
    if ctx is None or not new:
        return
    try:
        dispatch.hand_off_new(ctx, new)
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception as exc:
        log.warning("dispatch.publish_deferred", error_type=type(exc).__name__)


@shared_task(name=DISPATCH_TASK, bind=True, base=KaveTask)
def publish_dispatch(self: KaveTask, dispatch_id: int) -> str:
    structlog.contextvars.bind_contextvars(dispatch_id=dispatch_id)
    ctx = dispatch_context(self.context)
    if ctx is None:
        return "handoff_off"
    return dispatch.publish(ctx, dispatch_id)


# Housekeeping on beat's timer: no task events (see worker.task_base), so Flower lists mail.
@shared_task(name=DISPATCH_SWEEP_TASK, bind=True, base=KaveTask, send_events=False)
def sweep_dispatches(self: KaveTask) -> int:
    ctx = dispatch_context(self.context)
    if ctx is None:
        return 0
    with ctx.session_factory() as session:
        ids = dispatch.due_dispatches(session)
    for dispatch_id in ids:
        schedule_dispatch(dispatch_id)
    if ids:
        log.info("dispatch.swept", due=len(ids))
    return len(ids)
