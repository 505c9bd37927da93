"""What to do with a delivery whose attempt failed: retry later, or give up.

The decision is declared here once, for every task: transient failures (a service down)
are retried with exponential backoff and full jitter until a deadline counted from when
the receiver accepted the batch; unknown errors are retried a few times (they may be
transient in disguise); then the delivery becomes a dead letter that can be replayed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.settings import Settings
from worker.errors import is_transient

BACKOFF_BASE_SECONDS = 1.0


@dataclass(frozen=True)
class RetryLater:
    countdown: float


@dataclass(frozen=True)
class GiveUp:
    error_class: str
    message: str


def backoff_seconds(retries: int, cap: float) -> float:
    ceiling = min(cap, BACKOFF_BASE_SECONDS * 2 ** min(retries, 30))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


def decide(
    exc: BaseException,
    *,
    retries: int,
    received_at: datetime,
    now: datetime,
    settings: Settings,
) -> RetryLater | GiveUp:
    name = type(exc).__name__
    if is_transient(exc):
        deadline = received_at + timedelta(seconds=settings.retry_deadline_seconds)
        countdown = backoff_seconds(retries, settings.retry_backoff_max_seconds)
        if now + timedelta(seconds=countdown) <= deadline:
            return RetryLater(countdown)
        hours = settings.retry_deadline_seconds / 3600
        return GiveUp(
            f"transient:{name}",
            f"{name} persisted for {hours:g} h ({retries + 1} attempts); "
            "replay once the service is back",
        )
    if retries < settings.unknown_error_retries:
        return RetryLater(backoff_seconds(retries, settings.retry_backoff_max_seconds))
    return GiveUp(
        f"unknown:{name}",
        f"unexpected {name} on {retries + 1} attempts; see the traceback, fix, then replay",
    )
