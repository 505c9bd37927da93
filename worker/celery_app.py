"""The Celery application of the workers, built by :func:`create_celery_app`.

``worker.main`` holds the instance the ``celery`` command loads.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import structlog
from celery import Celery, signals

from shared.logging import configure_logging
from shared.queue import celery_config
from shared.settings import ProcessName, Settings, SettingsError, get_settings
from worker import metrics as worker_metrics
from worker.handoff.routes import RouteError, cached_routes

log = structlog.get_logger(__name__)


def create_celery_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    _check_routes(settings)
    app = Celery("kave")
    app.conf.update(celery_config(settings))
    # Registers the tasks with this app (shared_task binds to every app).
    import worker.handoff.tasks
    import worker.tasks  # noqa: F401

    @signals.worker_init.connect(weak=False)
    def _check_worker_process(**_: Any) -> None:
        _require_process(settings, "worker")

    @signals.beat_init.connect(weak=False)
    def _check_beat_process(**_: Any) -> None:
        _require_process(settings, "beat")

    @signals.setup_logging.connect(weak=False)
    def _setup_logging(**_: Any) -> None:
        # Connecting this signal stops Celery from installing its own handlers.
        configure_logging(settings, process="worker")

    @signals.task_prerun.connect(weak=False)
    def _bind_task(task_id: str, task: Any, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            task_id=task_id,
            task_name=task.name,
            **_correlation_ids(kwargs, getattr(task.request, "request_id", None)),
        )
        worker_metrics.task_started(task_id)

    @signals.task_received.connect(weak=False)
    def _log_received(request: Any, **_: Any) -> None:
        # In the main process, before a pool process runs the task. Replaces Celery's
        # own "Task ... received" line (silenced in shared.logging), which has no ids.
        headers = getattr(request, "request_dict", None)
        header = headers.get("request_id") if isinstance(headers, dict) else None
        log.info(
            "task.received",
            task_id=request.id,
            task_name=request.name,
            **_correlation_ids(getattr(request, "kwargs", None), header),
        )

    @signals.task_postrun.connect(weak=False)
    def _unbind_task(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
        # After Celery's own "Task ... succeeded" line, which thus carries the ids too.
        worker_metrics.task_finished(task_id, task.name, state)
        structlog.contextvars.clear_contextvars()

    @signals.task_retry.connect(weak=False)
    def _count_retry(sender: Any, reason: Any = None, **_: Any) -> None:
        worker_metrics.task_retried(sender.name, getattr(reason, "exc", None) or reason)

    @signals.celeryd_after_setup.connect(weak=False)
    def _serve_metrics(**_: Any) -> None:
        # Main process, logging configured, pool not forked yet.
        worker_metrics.setup_node(settings.worker_metrics_dir)
        worker_metrics.serve_node(settings.worker_metrics_host, settings.worker_metrics_port)

    @signals.worker_process_init.connect(weak=False)
    def _freeze_startup_heap(**_: Any) -> None:
        # What a pool process starts with (modules, the app, settings) lives as long as it
        # does: moved out of the collector's generations, the full collections that the
        # per-email garbage triggers no longer walk it (on a heap this size each was long).
        gc.collect()
        gc.freeze()

    @signals.worker_shutdown.connect(weak=False)
    def _stop_metrics(**_: Any) -> None:
        worker_metrics.shutdown_node()

    @signals.worker_process_shutdown.connect(weak=False)
    def _release(**_: Any) -> None:
        from worker.resources import release

        release()

    return app


def _check_routes(settings: Settings) -> None:
    """Refuse to start with an invalid hand-off routes file (better than failing per email)."""
    if settings.handoff_routes_file is not None:
        try:
            cached_routes(str(settings.handoff_routes_file))
        except RouteError as exc:
            raise SettingsError(str(exc)) from exc


def _correlation_ids(kwargs: Any, request_id_header: Any) -> dict[str, str]:
    """The request and delivery ids of a task, from its envelope or its headers."""
    ids: dict[str, str] = {}
    envelope = kwargs.get("envelope") if isinstance(kwargs, dict) else None
    if isinstance(envelope, dict):
        for name in ("request_id", "delivery_id"):
            if isinstance(envelope.get(name), str):
                ids[name] = envelope[name]
    # The receiver also sends the request id as a message header (Celery puts custom
    # headers on the task request): the only one for tasks without an envelope.
    if isinstance(request_id_header, str) and request_id_header:
        ids.setdefault("request_id", request_id_header)
    return ids


def _require_process(settings: Settings, process: ProcessName) -> None:
    # SystemExit, not the SettingsError: Celery's signal dispatch logs and swallows
    # exceptions, and the process must not start.
    try:
        settings.require_process(process)
    except SettingsError as exc:
        sys.exit(f"kave {process}: {exc}")
