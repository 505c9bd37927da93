"""Celery configuration shared by the producer (receiver) and the consumers (workers).

Both sides must agree on the broker, the queue and the transport options (the
visibility timeout in particular is applied by whichever side restores unacked
messages), so the configuration is built in one place.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.contract import (
    DISPATCH_SWEEP_TASK,
    DISPATCH_TASK,
    PROCESS_DELIVERY_TASK,
    PURGE_TASK,
    RECONCILE_TASK,
    REPLAY_DEAD_LETTER_TASK,
    TEXT_CONVERT_TASK,
    TEXT_SWEEP_TASK,
)
from shared.redis_connect import celery_broker
from shared.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    # Short socket timeouts: a receiver that cannot reach Redis must answer 503 quickly
    # (Mandrill then retries) rather than hang until Mandrill's own timeout.
    socket_timeout = max(settings.enqueue_timeout_seconds, 1.0)
    # The URL, TLS and Sentinel's options (shared.redis_connect: the same Redis as every
    # other client of this process).
    broker = celery_broker(settings, socket_timeout)
    return {
        **broker,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            **broker["broker_transport_options"],
            "visibility_timeout": settings.visibility_timeout_seconds,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "health_check_interval": 10,
            # Look for messages of dead workers every interval (kombu scans only every
            # interval * throttle; throttle 1 makes the bound what the setting says).
            "unacked_restore_interval": settings.unacked_restore_interval_seconds,
            "unacked_restore_throttle": 1,
        },
        "task_default_queue": settings.queue_name,
        "task_routes": {
            PROCESS_DELIVERY_TASK: {"queue": settings.queue_name},
            REPLAY_DEAD_LETTER_TASK: {"queue": settings.queue_name},
            RECONCILE_TASK: {"queue": settings.queue_name},
            PURGE_TASK: {"queue": settings.queue_name},
            DISPATCH_TASK: {"queue": settings.queue_name},
            DISPATCH_SWEEP_TASK: {"queue": settings.queue_name},
            # Conversions on their own queue (the text workers): never ahead of mail.
            TEXT_CONVERT_TASK: {"queue": settings.text_queue_name},
            TEXT_SWEEP_TASK: {"queue": settings.queue_name},
        },
        # Celery beat (`celery -A worker.main beat`, one instance) runs reconciliation
        # and retention.
        "beat_schedule": {
            "reconcile-unfinished-deliveries": {
                "task": RECONCILE_TASK,
                "schedule": float(settings.reconcile_interval_seconds),
            },
            "purge-by-retention-policy": {
                "task": PURGE_TASK,
                "schedule": float(settings.purge_interval_seconds),
            },
            # The outbox sweep: hand-off rows whose publish was lost or whose lease expired.
            "sweep-handoff-outbox": {
                "task": DISPATCH_SWEEP_TASK,
                "schedule": float(settings.handoff_sweep_interval_seconds),
            },
            # Attachment text still pending (lost messages, killed text workers).
            "sweep-attachment-text": {
                "task": TEXT_SWEEP_TASK,
                "schedule": float(settings.text_sweep_interval_seconds),
            },
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        # No results are kept (nothing reads them), so there is no result backend to
        # point at Sentinel or TLS: the broker is the only Redis Celery talks to.
        "result_backend": None,
        "task_ignore_result": True,
        # At-least-once delivery: ack only after the task finished, give a killed
        # child's message back to the queue, and hold one message per process at a time.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit_seconds,
        # The soft limit raises inside the task first, so it can end cleanly; the hard
        # limit then kills the process.
        "task_soft_time_limit": max(
            settings.task_time_limit_seconds - min(30, settings.task_time_limit_seconds // 5), 1
        ),
        "worker_concurrency": settings.worker_concurrency,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,
        # No "task-sent" event per publish: it is a second Redis message for every
        # webhook (~10% of the receiver's CPU); Flower shows tasks from "received" on.
        "task_send_sent_event": False,
        "enable_utc": True,
    }


def make_producer(settings: Settings, name: str) -> Celery:
    """A Celery app that only publishes, by task name: the receiver and the API never
    import the worker's tasks."""
    producer = Celery(name, set_as_current=False)
    producer.conf.update(celery_config(settings))
    return producer
