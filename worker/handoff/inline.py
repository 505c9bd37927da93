"""Which new dispatches this worker hands off itself, right after storing their emails.

Role: a dispatch handed off inline costs the worker one broker publish or one POST, plus
the record of its outcome; handed to a ``kave.dispatch.publish`` task it costs a broker
round trip and a whole task more (about as much again as the hand-off itself). So the
worker that stores an email inserts its dispatch row already claimed, with the lease a
publisher takes (``lease_seconds``), and hands it off after the commit. If it dies
before recording the outcome the lease runs out and the sweep takes the row, as it
takes any abandoned claim: the same key reaches the handler again, never no key.

A handler that is slow or unreachable must not hold up ingestion, though: a route whose
inline hand-off raised (a timeout, a refused connection, a broker error) or took longer
than ``SLOW_SECONDS`` is paused in this process for ``PAUSE_SECONDS``. Its new dispatches
are then inserted due and handed to tasks, as before this module existed, and the next
email after the pause tries inline again. A fast handler's error answers (4xx/5xx) do
not pause it: they cost no waiting, and their retries are tasks anyway.
"""

from __future__ import annotations

import time

import structlog

from worker.handoff.routes import CeleryHandler, RouteTable

log = structlog.get_logger(__name__)

# Past the slowest handler's own timeout, how long a claimed row stays invisible to other
# publishers (the sweep's): an attempt in flight must have recorded its outcome by then.
LEASE_GRACE_SECONDS = 30.0
SLOW_SECONDS = 1.0
PAUSE_SECONDS = 30.0

# route name -> time.monotonic() until which it is handed to tasks. Per process: a pool
# child learns of a slow handler by itself (at the cost of one slow hand-off).
_paused_until: dict[str, float] = {}


def lease_seconds(routes: RouteTable) -> float:
    """How long a claim keeps a row: the slowest HTTP handler's timeout plus a grace."""
    timeouts = [
        r.handler.http.timeout_seconds
        for r in routes.routes
        if not isinstance(r.handler, CeleryHandler)
    ]
    return max(timeouts, default=0.0) + LEASE_GRACE_SECONDS


def takes_inline(route: str) -> bool:
    """Whether this process hands the route's new dispatches off itself right now."""
    paused = _paused_until.get(route)
    if paused is None:
        return True
    if time.monotonic() < paused:
        return False
    del _paused_until[route]
    return True


def observed(route: str, seconds: float, *, raised: bool) -> None:
    """Note how an inline hand-off went; pause the route if it held up the worker."""
    if raised or seconds > SLOW_SECONDS:
        _paused_until[route] = time.monotonic() + PAUSE_SECONDS
        log.warning(
            "dispatch.inline_paused",
            route=route,
            seconds=round(seconds, 3),
            raised=raised,
            pause_seconds=PAUSE_SECONDS,
        )


def resume_all() -> None:
    """Forget every pause (tests; a process that wants to start afresh)."""
    _paused_until.clear()
