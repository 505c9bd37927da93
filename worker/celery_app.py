"""The Celery application of the workers, built by :func:`create_celery_app`.

``worker.main`` holds the instance the ``celery`` command loads.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery, signals

from shared.logging import configure_logging
from shared.queue import celery_config
from shared.settings import Settings, get_settings


def create_celery_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("kave")
    app.conf.update(celery_config(settings))
    # Registers the tasks with this app (shared_task binds to every app).
    import worker.tasks  # noqa: F401

    @signals.setup_logging.connect(weak=False)
    def _setup_logging(**_: Any) -> None:
        # Connecting this signal stops Celery from installing its own handlers.
        configure_logging(settings, process="worker")

    @signals.task_prerun.connect(weak=False)
    def _bind_task(task_id: str, task: Any, **_: Any) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(task_id=task_id, task_name=task.name)

    @signals.task_postrun.connect(weak=False)
    def _unbind_task(**_: Any) -> None:
        structlog.contextvars.clear_contextvars()

    @signals.worker_process_shutdown.connect(weak=False)
    def _release(**_: Any) -> None:
        from worker.resources import release

        release()

    return app
