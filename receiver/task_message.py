"""A task's message, sent as Celery's ``send_task`` sends it, without its per-call work.

On every call ``send_task`` looks the task's route up, checks the task registry and the
current worker task, builds the message, publishes it and returns an ``AsyncResult``:
~0.19 ms of CPU a message on this machine, a fifth of what the receiver spends on an
8 KB webhook. The receiver sends one task to one route and never reads results
(``task_ignore_result``), so here the route is looked up once and each message is built
and published with the two ``app.amqp`` calls ``send_task`` itself makes: ~0.13 ms.
The message is the one ``send_task`` sends: ``tests/receiver/test_task_message.py``
compares the two in Redis, so a Celery upgrade that changes either is caught there.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.utils import uuid

__all__ = ["TaskSender"]


class TaskSender:
    """Sends messages of the task ``name``, on the route Celery's router gives it."""

    def __init__(self, celery: Celery, name: str) -> None:
        self.celery = celery
        self.name = name
        # What send_task merges each call's options into (task_routes, else the default
        # queue); the configuration does not change while the app lives.
        self.route: dict[str, Any] = celery.amqp.router.route({}, name)

    def send(
        self,
        producer: Any,
        *,
        kwargs: dict[str, Any],
        argsrepr: str,
        kwargsrepr: str,
        headers: dict[str, Any],
    ) -> None:
        """Publish one message with ``producer`` (no retry: the caller decides)."""
        amqp = self.celery.amqp
        options = {
            **self.route,
            "argsrepr": argsrepr,
            "kwargsrepr": kwargsrepr,
            "headers": headers,
            "retry": False,
        }
        message = amqp.create_task_message(
            uuid(),
            self.name,
            (),
            kwargs,
            reply_to=self.celery.thread_oid,
            create_sent_event=self.celery.conf.task_send_sent_event,
            ignore_result=None,  # as send_task leaves it: the app's setting decides
            **options,
        )
        amqp.send_task_message(producer, self.name, message, **options)
