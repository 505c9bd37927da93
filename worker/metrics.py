"""The workers' Prometheus metrics, across the processes of a prefork pool.

A worker node is one ``celery worker`` main process and its pool children; the
children do the work. prometheus_client's multiprocess mode makes each child write its
samples to memory-mapped files in a directory of the node, and the main process serves
the sum of them all on ``KAVE_WORKER_METRICS_PORT``: one scrape target per node (one
per container under ``docker compose up --scale worker=N``), whatever the concurrency,
and counters survive a child that is replaced.

:func:`setup_node` and :func:`serve_node` run in the main process once logging is set
up and before the pool forks (``celeryd_after_setup``); the children inherit the mode.
Outside a worker node (tests calling the ingest service directly, ``kave reprocess``)
the recording functions still work and go nowhere.
Label values come from small fixed sets, never from payloads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import Counter, Histogram

log = structlog.get_logger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 240.0)
LAG_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0)
# Mandrill's kinds; anything else (a kind Mandrill adds tomorrow, or garbage) is "other".
KNOWN_KINDS = frozenset(
    {
        "inbound",
        "send",
        "deferral",
        "hard_bounce",
        "soft_bounce",
        "open",
        "click",
        "spam",
        "unsub",
        "reject",
        "delivered",
        "sync.blacklist",
        "sync.whitelist",
        "unknown",
    }
)


@dataclass(frozen=True)
class _Metrics:
    tasks: Counter
    task_duration: Histogram
    retries: Counter
    events: Counter
    dead_letters: Counter
    delivery_lag: Histogram


@cache
def _metrics() -> _Metrics:
    # Built on first use, in the process that records: after setup_node, so the values
    # are multiprocess ones. Not registered in the default registry: the node's server
    # reads the children's files instead.
    return _Metrics(
        tasks=Counter(
            "kave_worker_tasks",
            "Tasks finished by this worker node, by task name and final state",
            ["task", "state"],
            registry=None,
        ),
        task_duration=Histogram(
            "kave_worker_task_duration_seconds",
            "Time a task ran in a pool process, by task name and final state",
            ["task", "state"],
            buckets=DURATION_BUCKETS,
            registry=None,
        ),
        retries=Counter(
            "kave_worker_task_retries",
            "Task retries scheduled, by task name and the error that caused them",
            ["task", "error_type"],
            registry=None,
        ),
        events=Counter(
            "kave_worker_events",
            "Events processed, by kind and outcome (stored, duplicate, failed)",
            ["kind", "outcome"],
            registry=None,
        ),
        dead_letters=Counter(
            "kave_worker_dead_letters",
            "Dead letters written, by scope (event or whole delivery) and error class",
            ["scope", "error_class"],
            registry=None,
        ),
        delivery_lag=Histogram(
            "kave_worker_delivery_lag_seconds",
            "Time from the receiver's 200 to the delivery's last event being recorded",
            buckets=LAG_BUCKETS,
            registry=None,
        ),
    )


def _kind(kind: str | None) -> str:
    if kind is None:
        return "none"
    return kind if kind in KNOWN_KINDS else "other"


def _error_class(error_class: str) -> str:
    # Kave's own short snake_case names; bounded in case one ever carries text.
    return error_class[:64]


# --- recording (any process) -------------------------------------------------------


def count_event(kind: str, outcome: str) -> None:
    _metrics().events.labels(_kind(kind), outcome).inc()


def event_dead_lettered(kind: str, error_class: str) -> None:
    metrics = _metrics()
    metrics.events.labels(_kind(kind), "failed").inc()
    metrics.dead_letters.labels("event", _error_class(error_class)).inc()


def delivery_dead_lettered(error_class: str) -> None:
    _metrics().dead_letters.labels("delivery", _error_class(error_class)).inc()


def delivery_finished(received_at: str, *, replaying: bool = False) -> None:
    """The last event of a delivery is recorded: observe the time since acceptance
    (not for replays, whose age says nothing about the pipeline's speed)."""
    if replaying:
        return
    try:
        accepted = datetime.fromisoformat(received_at)
    except ValueError:
        return
    if accepted.tzinfo is None:
        accepted = accepted.replace(tzinfo=UTC)
    lag = (datetime.now(UTC) - accepted).total_seconds()
    _metrics().delivery_lag.observe(max(lag, 0.0))


def task_retried(task_name: str, error: BaseException | None) -> None:
    # A TaskFailure (worker/errors.py) stands for the real error: count that one's type.
    error_type = (
        getattr(error, "error_type", type(error).__name__) if error is not None else "unknown"
    )
    _metrics().retries.labels(task_name, error_type).inc()


_started: dict[str, float] = {}


def task_started(task_id: str) -> None:
    _started[task_id] = time.perf_counter()


def task_finished(task_id: str, task_name: str, state: str | None) -> None:
    started = _started.pop(task_id, None)
    metrics = _metrics()
    label = state or "UNKNOWN"
    metrics.tasks.labels(task_name, label).inc()
    if started is not None:
        metrics.task_duration.labels(task_name, label).observe(time.perf_counter() - started)


# --- the node (main process) -------------------------------------------------------


@dataclass
class _Node:
    directory: Path
    owned: bool
    server: Any = None


_node: _Node | None = None


def setup_node(directory: Path | None) -> Path:
    """Switch this process (and the pool it will fork) to multiprocess metrics.

    Must run before any metric is recorded in this process. ``directory`` is emptied:
    files of a previous run would otherwise be added to this one's.
    """
    global _node  # noqa: PLW0603 - one node per main process, by design
    from prometheus_client import values

    if directory is None:
        path, owned = Path(tempfile.mkdtemp(prefix="kave-worker-metrics-")), True
    else:
        path, owned = directory, False
        path.mkdir(parents=True, exist_ok=True)
        for kind in ("counter", "gauge", "histogram", "summary"):
            for stale in path.glob(f"{kind}_*.db"):
                stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus_client picks its value class when imported; pick again now that the
    # directory is set (the module keeps this seam for exactly that).
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    _metrics.cache_clear()
    _node = _Node(directory=path, owned=owned)
    return path


def serve_node(host: str, port: int) -> int | None:
    """Serve the node's metrics over HTTP from a daemon thread; the bound port, or None."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    if _node is None or port == 0:
        return None
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(_node.directory))  # type: ignore[no-untyped-call]
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        # Metrics are worth less than the work: keep consuming, say so loudly.
        log.error("worker.metrics_unavailable", host=host, port=port, error_type=type(exc).__name__)
        return None
    _node.server = server
    bound: int = server.server_port
    log.info("worker.metrics_serving", host=host, port=bound, directory=str(_node.directory))
    return bound


def shutdown_node() -> None:
    global _node  # noqa: PLW0603
    if _node is None:
        return
    if _node.server is not None:
        _node.server.shutdown()
        _node.server.server_close()
    if _node.owned:
        shutil.rmtree(_node.directory, ignore_errors=True)
    _node = None
