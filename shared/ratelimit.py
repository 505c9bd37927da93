"""Sliding-window rate limits kept in Redis, one bucket per identity.

Both HTTP apps use it: the API per client on the token endpoint and per user on the
rest, the receiver per client on the webhook POSTs it refuses (receiver/webhook_limit.py). Every
replica of an app counts in the same Redis, so a limit holds across replicas.

pyrate-limiter supplies the algorithm: its Redis bucket checks and inserts in one atomic
Lua script and reports how long until the next request fits. What it does not do here:

* **Buckets**: one Redis sorted set per limit and identity (a client address, a user),
  never one global bucket, so one client's traffic never uses up another's. Keys are
  ``kave:ratelimit:<KAVE_QUEUE_NAME>:<limit>:<identity>``: the replicas of one
  deployment share a queue name, two deployments on one Redis do not.
* **Cleanup**: every hit trims the entries that left the window and lets the key expire
  once its window is over (pyrate-limiter would run a leak task per bucket, one per
  address ever seen).
* **Redis restarts** forget loaded scripts: the script is loaded again and the hit
  retried.
* **Refusal**: a :class:`TooManyRequestsError` whose message names the limit and whose
  ``Retry-After`` is when the request blocking this one leaves the window.
* **Give-back**: :meth:`RedisRateLimit.take` counts an attempt that can be uncounted
  afterwards (the per-account login limit counts failed logins only). Counting first and
  uncounting on success, rather than counting only after a failure, keeps the limit
  atomic: a burst of parallel attempts cannot all pass before the first failure lands.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

from pyrate_limiter import Decision, Rate, RateItem, RedisBucket
from pyrate_limiter.buckets.redis_bucket import LuaScript
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from shared.settings import RateLimit
from shared.web.errors import TooManyRequestsError

KEY_PREFIX = "kave:ratelimit"


class RateLimitStore:
    """The Redis connection, key prefix and loaded script that an app's limits share."""

    def __init__(self, redis: Redis, queue_name: str) -> None:
        self.redis = redis
        self.prefix = f"{KEY_PREFIX}:{queue_name}"
        self._sha: str | None = None

    async def script_sha(self) -> str:
        return self._sha or await self.reload_script()

    async def reload_script(self) -> str:
        sha = await self.redis.script_load(LuaScript.PUT_ITEM)
        self._sha = sha.decode() if isinstance(sha, bytes) else str(sha)
        return self._sha

    def limit(self, name: str, rate: RateLimit, *, refusal: str) -> RedisRateLimit:
        return RedisRateLimit(self, name, rate, refusal=refusal)


class RedisRateLimit:
    """``rate.limit`` hits per ``rate.seconds`` for each identity."""

    def __init__(self, store: RateLimitStore, name: str, rate: RateLimit, *, refusal: str) -> None:
        self.store = store
        self.name = name
        self.rate = rate
        self.window_ms = rate.seconds * 1000
        self._rates = [Rate(rate.limit, self.window_ms)]
        self._refusal = refusal

    def key(self, identity: str) -> str:
        return f"{self.store.prefix}:{self.name}:{identity}"

    async def hit(self, identity: str) -> TooManyRequestsError | None:
        """Count one request of ``identity``; the refusal when it is over the limit.

        Raises ``redis.exceptions.RedisError`` when Redis cannot be reached: the caller
        decides whether that closes the door (the API) or not (the webhook).
        """
        return (await self.take(identity)).refusal

    async def take(self, identity: str) -> Taken:
        """Count one request of ``identity`` as :meth:`hit` does, and say how to uncount
        it (:meth:`give_back`); errors as :meth:`hit`."""
        redis = self.store.redis
        key = self.key(identity)
        # A name of its own, so that give_back finds this entry and no other.
        item = RateItem(f"{identity}.{uuid.uuid4().hex}", time.time_ns() // 1_000_000)
        bucket = RedisBucket(self._rates, redis, key, await self.store.script_sha())
        try:
            decision = await cast(Awaitable[Decision], bucket.put_decision(item))
        except NoScriptError:
            bucket.script_hash = await self.store.reload_script()
            decision = await cast(Awaitable[Decision], bucket.put_decision(item))
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, 0, item.timestamp - self.window_ms - 1)
            pipe.pexpire(key, self.window_ms)
            await pipe.execute()
        if decision.allowed:
            return Taken(key, item.name, item.timestamp, refusal=None)
        retry_after = max(1, math.ceil((decision.retry_after_ms or 0) / 1000))
        refusal = TooManyRequestsError(
            f"{self._refusal} (limit {self.rate.limit} per {self.rate.seconds} s); "
            f"retry in {retry_after} s",
            retry_after=retry_after,
        )
        return Taken(key, item.name, item.timestamp, refusal=refusal)

    async def give_back(self, taken: Taken) -> None:
        """Uncount a request counted by :meth:`take` (nothing if it was refused)."""
        if taken.refusal is not None:
            return
        redis = self.store.redis
        # pyrate-limiter names the entry "<item name>:<random id>:1"; the item name is ours.
        members = cast(
            list[bytes | str],
            await redis.zrangebyscore(taken.key, taken.timestamp, taken.timestamp),
        )
        prefix = f"{taken.name}:"
        mine = [
            member
            for member in members
            if (member.decode() if isinstance(member, bytes) else member).startswith(prefix)
        ]
        if mine:
            await redis.zrem(taken.key, *mine)


@dataclass(frozen=True, slots=True)
class Taken:
    """One counted request: where its entry is, and the refusal if it was over the limit."""

    key: str
    name: str
    timestamp: int
    refusal: TooManyRequestsError | None
