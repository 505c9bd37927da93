"""Sliding-window rate limits kept in Redis, one bucket per identity.

Both HTTP apps use it: the API per client on the token endpoint and per user on the
rest, the receiver per client on the webhook POSTs it refuses (receiver/webhook_limit.py). Every
replica of an app counts in the same Redis, so a limit holds across replicas.

The algorithm is a sliding log: one Redis sorted set per limit and identity, one entry
per counted request, scored by the time it was counted. One Lua script trims the entries
that left the window, counts the rest, and adds the new one only if it fits, atomically,
and reads the time from the Redis server (``TIME``) inside the script. That last part is
why this is our own dozen lines and not pyrate-limiter's Redis bucket, which this module
used before: that bucket takes the timestamp from the client, before the script runs, so
of parallel requests whose timestamps reach Redis out of order each counted only the
entries older than its own, and a burst got past the limit (a burst of 12 parallel
failed logins against a limit of 3 got 4 or more guesses in about one run in six).
redis-py's ``Script`` loads the script again after a Redis restart forgot it.

* **Buckets**: never one global bucket, so one client's traffic never uses up another's.
  Keys are ``kave:ratelimit:<KAVE_QUEUE_NAME>:<limit>:<identity>``: the replicas of one
  deployment share a queue name, two deployments on one Redis do not. A key expires once
  its window is over.
* **Refusal**: a :class:`TooManyRequestsError` whose message names the limit and whose
  ``Retry-After`` is when the oldest entry leaves the window. A refused request is not
  counted.
* **Give-back**: :meth:`RedisRateLimit.take` counts an attempt that can be uncounted
  afterwards (the per-account login limit counts failed logins only). Counting first and
  uncounting on success, rather than counting only after a failure, keeps the limit
  atomic: a burst of parallel attempts cannot all pass before the first failure lands.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from shared.settings import RateLimit
from shared.web.errors import TooManyRequestsError

KEY_PREFIX = "kave:ratelimit"


# KEYS[1]: the bucket. ARGV: window in ms, limit, the new entry's name.
# Returns {1, 0} when counted, {0, ms until the oldest entry leaves the window} when not.
_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], window)
    return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
"""


class RateLimitStore:
    """The Redis connection, key prefix and registered script that an app's limits share."""

    def __init__(self, redis: Redis, queue_name: str) -> None:
        self.redis = redis
        self.prefix = f"{KEY_PREFIX}:{queue_name}"
        self.take_script = redis.register_script(_TAKE)

    def limit(self, name: str, rate: RateLimit, *, refusal: str) -> RedisRateLimit:
        return RedisRateLimit(self, name, rate, refusal=refusal)


class RedisRateLimit:
    """``rate.limit`` hits per ``rate.seconds`` for each identity."""

    def __init__(self, store: RateLimitStore, name: str, rate: RateLimit, *, refusal: str) -> None:
        self.store = store
        self.name = name
        self.rate = rate
        self.window_ms = rate.seconds * 1000
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
        key = self.key(identity)
        # A name of its own, so that give_back finds this entry and no other.
        entry = uuid.uuid4().hex
        counted, wait_ms = cast(
            list[Any],
            await self.store.take_script(keys=[key], args=[self.window_ms, self.rate.limit, entry]),
        )
        if int(counted):
            return Taken(key, entry, refusal=None)
        retry_after = max(1, math.ceil(int(wait_ms) / 1000))
        refusal = TooManyRequestsError(
            f"{self._refusal} (limit {self.rate.limit} per {self.rate.seconds} s); "
            f"retry in {retry_after} s",
            retry_after=retry_after,
        )
        return Taken(key, entry, refusal=refusal)

    async def give_back(self, taken: Taken) -> None:
        """Uncount a request counted by :meth:`take` (nothing if it was refused)."""
        if taken.refusal is not None:
            return
        await self.store.redis.zrem(taken.key, taken.entry)


@dataclass(frozen=True, slots=True)
class Taken:
    """One counted request: where its entry is, and the refusal if it was over the limit."""

    key: str
    entry: str
    refusal: TooManyRequestsError | None
