"""Prometheus counters of the hand-off: dispatch attempts by route and outcome.

Recorded in the pool processes like ``worker.metrics`` (multiprocess mode, summed by the
node's /metrics). Label values are route names from the routes file (a small fixed set),
and outcomes from a fixed set: delivered, retried, dead, superseded (a late outcome of an
attempt that outlived its lease: another attempt has the row). Unrouted emails are never
attempted, so never counted here (``dispatches.status`` has them).
"""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter


@cache
def _dispatches() -> Counter:
    # registry=None: the node's server reads the children's files (see worker.metrics).
    return Counter(
        "kave_worker_dispatches",
        "Hand-off attempts to the platform's handlers, by route and outcome",
        ["route", "outcome"],
        registry=None,
    )


def dispatched(route: str, outcome: str) -> None:
    _dispatches().labels(route=route[:64], outcome=outcome).inc()
