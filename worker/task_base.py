"""The base class of every Kave task: its process's context, what Celery may show of a
failure, and the retry policy of ``worker.errors`` in one place, so that a task body is
only the call of its service.

Imports the worker's context (``worker.resources``) and its error policy; the rooms never
import it (a room that did would depend on Celery).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import structlog
from celery import Task
from celery.exceptions import Reject, TaskPredicate

from worker.errors import GiveUp, TaskFailure, decide, describe
from worker.interrupts import INTERRUPTS
from worker.resources import WorkerContext, worker_context

log = structlog.get_logger(__name__)

R = TypeVar("R")


class KaveTask(Task):  # type: ignore[misc]  # Celery ships no type information
    """Tasks are made with ``@shared_task(base=KaveTask, ...)``.

    Housekeeping that runs on a timer sets ``send_events=False`` (a Celery task option):
    the worker then sends no task events for it, so Flower's task list shows the mail
    (deliveries, replays, hand-offs), not a sweep every few seconds. Its failures still
    reach the JSON logs and the worker's task metrics, which do not depend on events.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Whatever escapes the task reaches Celery (its log lines, its task-failed event,
        so Flower) as a :class:`TaskFailure`: the frames where it was raised and
        ``describe``'s summary, not the original message, which could quote the payload."""
        try:
            return super().__call__(*args, **kwargs)
        except INTERRUPTS:
            raise  # a time limit: Celery knows what it means
        except (TaskPredicate, TaskFailure):
            raise  # Celery's own control flow (retry, reject), or already described
        except Exception as exc:
            raise TaskFailure.of(exc).with_traceback(exc.__traceback__) from None

    @property
    def context(self) -> WorkerContext:
        """This process's settings, routes and resources (made on first use)."""
        return worker_context()

    def run_with_retries(
        self,
        work: Callable[[], R],
        *,
        received_at: datetime,
        summary: str,
        give_up: Callable[[GiveUp, Exception], R],
        event: str = "task.retrying",
    ) -> R:
        """``work()``, or on failure what ``worker.errors.decide`` says: a retry later (a new
        message, :meth:`retry_later`) or ``give_up``'s answer. ``received_at`` starts the
        retry budget; ``summary`` is what Flower shows of the retried message."""
        try:
            return work()
        except Exception as exc:
            decision = decide(
                exc,
                retries=self.request.retries,
                received_at=received_at,
                now=datetime.now(UTC),
                settings=self.context.settings,
            )
            if isinstance(decision, GiveUp):
                return give_up(decision, exc)
            log.warning(
                event,
                error_type=type(exc).__name__,
                error=describe(exc),
                retries=self.request.retries,
                countdown=round(decision.countdown, 2),
            )
            failure, countdown = TaskFailure.of(exc), decision.countdown
        # Outside the except block, so that the retry does not carry the original
        # exception (and its message) as its context.
        return self.retry_later(failure, countdown, summary=summary)

    def retry_later(self, exc: Exception, countdown: float, *, summary: str) -> NoReturn:
        """Schedule the retry; if the broker cannot take it, give the message back instead.

        Celery's ``retry`` publishes a new message and, when that publish fails (Redis is
        the thing that is down), rejects the current one without requeueing: the task would
        be gone. Requeueing keeps it in Redis; if even that cannot be sent, the message
        stays unacknowledged and returns after the visibility timeout.
        """
        try:
            # The retried message gets the same short reprs as the first one (for Flower).
            raise self.retry(exc=exc, countdown=countdown, argsrepr="()", kwargsrepr=summary)
        except Reject as rejected:
            log.warning("task.retry_not_published", error_type=type(rejected.reason).__name__)
            raise Reject(rejected.reason, requeue=True) from exc
