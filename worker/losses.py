"""Bounding redelivery of work that kills its worker.

With ``acks_late`` and ``task_reject_on_worker_lost`` a task whose process dies (SIGKILL,
out of memory, the hard time limit) goes back to the queue, which is what we want once,
and a loop forever if the input itself is what kills the process. No code runs at the
moment of death, so each attempt leaves a marker in Redis saying what it is working on
(the body, or event N) and removes it when it ends in any normal way. An attempt that
finds a marker knows the previous one died there and counts a loss against that stage;
after ``max_worker_losses`` the stage is dead-lettered instead of being tried again.

Why Redis and hand-written: it is the one store every worker already talks to on every
task, and no library offers per-input crash accounting for Celery.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis as redis_lib
from redis import Redis

BODY_STAGE = "body"
# Markers outlive any plausible retry schedule, then clean themselves up.
MARKER_TTL_SECONDS = 7 * 24 * 3600


class LossTracker:
    def __init__(self, redis: Redis, delivery_id: str) -> None:
        self.redis = redis
        self.marker_key = f"kave:inflight:{delivery_id}"
        self.loss_key_prefix = f"kave:losses:{delivery_id}:"

    def begin(self, stage: str | int) -> tuple[str, int] | None:
        """Enter ``stage``; and where a previous attempt died and how often it died there
        (counted now), if one did. The marker is swapped in one command (``SET ... GET``,
        Redis 6.2+), so an attempt that follows no death costs one round trip."""
        return self._counted(
            self.redis.set(self.marker_key, str(stage), ex=MARKER_TTL_SECONDS, get=True)
        )

    def begin_reading(self, stage: str | int, key: str) -> tuple[tuple[str, int] | None, Any]:
        """:meth:`begin`, and the value of ``key`` read in the same round trip (the
        worker reads the delivery's body from Redis next)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.marker_key, str(stage), ex=MARKER_TTL_SECONDS, get=True)
        pipe.get(key)
        previous, value = pipe.execute()
        return self._counted(previous), value

    def _counted(self, previous: Any) -> tuple[str, int] | None:
        """Where a previous attempt died (the marker it left), and its losses there,
        counted now; None when no attempt died."""
        if previous is None:
            return None
        name = previous.decode() if isinstance(previous, bytes) else str(previous)
        loss_key = self.loss_key_prefix + name
        pipe = self.redis.pipeline()
        pipe.incr(loss_key)
        pipe.expire(loss_key, MARKER_TTL_SECONDS)
        losses, _ = pipe.execute()
        return name, int(losses)

    def enter(self, stage: str | int) -> None:
        self.redis.set(self.marker_key, str(stage), ex=MARKER_TTL_SECONDS)

    def leave(self) -> None:
        """The attempt ended without dying: nothing to count (best effort)."""
        with contextlib.suppress(redis_lib.RedisError):
            self.redis.delete(self.marker_key)

    def leave_deleting(self, *keys: str) -> None:
        """The attempt ended without dying, and ``keys`` are deleted in the same command;
        unlike :meth:`leave`, a failure reaches the caller (its keys matter)."""
        self.redis.delete(self.marker_key, *keys)
