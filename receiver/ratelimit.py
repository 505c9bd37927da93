"""Rate limits shared by every receiver replica, kept in Redis.

fastapi-limiter 0.2 supplies the dependency (``RateLimiter``) and pyrate-limiter the
sliding-window algorithm and its atomic Redis script. What their README sets up would not
do here, so four things differ:

* **Buckets**: one Redis sorted set per limit and identity (a client address, or a user),
  not one global in-memory bucket. pyrate-limiter routes every item of a ``Limiter`` to the
  bucket its factory returns; ours returns the identity's own bucket, so replicas share the
  count and one client's traffic never uses up another's. Keys start with
  ``kave:ratelimit:<KAVE_QUEUE_NAME>:``: the replicas of one deployment share a queue name,
  two deployments on one Redis do not.
* **Identity**: ``X-Forwarded-For`` is believed only when the direct peer is one of
  ``KAVE_TRUSTED_PROXIES``, and then the client is the right-most address that is not a
  trusted proxy: everything to the left of it was written by the client itself. IPv6
  clients count per /64, the block one host can trivially rotate addresses within.
* **Refusal**: 429 in the API's error format, with ``Retry-After`` read from the bucket
  (when its oldest request leaves the window).
* **Routes**: ``RateLimiter`` scans ``app.routes`` on every call to key buckets per route,
  and that scan fails on the included routers of current FastAPI (they have no ``path``).
  Our buckets are per identity across all routes of a limit, so the scan is left out.

Two limits: the token endpoint per client and the management API per user. Refused
webhook POSTs are limited per client by :mod:`receiver.webhook_limit`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import cast

import structlog
from fastapi import Request, Response
from fastapi_limiter.depends import RateLimiter
from pyrate_limiter import AbstractBucket, BucketFactory, Limiter, Rate, RateItem, RedisBucket
from pyrate_limiter.buckets.redis_bucket import LuaScript
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from receiver.deps import CurrentUser
from receiver.errors import ServiceUnavailableError, TooManyRequestsError
from shared.settings import RateLimit, Settings, parse_rate

log = structlog.get_logger(__name__)

KEY_PREFIX = "kave:ratelimit"

Network = IPv4Network | IPv6Network
Identify = Callable[[Request], Awaitable[str]]


# --- who is asking ------------------------------------------------------------------


def _parse_hop(value: str) -> IPv4Address | IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.7:443"
        value = value.split(":", 1)[0]
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPv4Address | IPv6Address | None, proxies: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


def _bucket_name(address: IPv4Address | IPv6Address) -> str:
    if isinstance(address, IPv6Address):
        return str(IPv6Network((address, 64), strict=False))
    return str(address)


def client_address(request: Request, trusted_proxies: Sequence[Network]) -> str:
    """The address a client-keyed limit counts against (see the module docstring)."""
    peer_text = request.client.host if request.client else ""
    peer = _parse_hop(peer_text)
    if peer is None:
        return peer_text or "unknown"
    client = peer
    if _trusted(peer, trusted_proxies):
        hops = [
            hop
            for header in request.headers.getlist("x-forwarded-for")
            for hop in header.split(",")
            if hop.strip()
        ]
        for hop in reversed(hops):
            address = _parse_hop(hop)
            if address is None:
                break  # garbage: believe nothing further left; count the last proxy
            client = address
            if not _trusted(address, trusted_proxies):
                break
    return _bucket_name(client)


# --- buckets ------------------------------------------------------------------------


class _Script:
    """The SHA of pyrate-limiter's check-and-insert script, loaded once and again after a
    Redis restart (which forgets loaded scripts)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._sha: str | None = None

    async def sha(self) -> str:
        if self._sha is None:
            return await self.reload()
        return self._sha

    async def reload(self) -> str:
        sha = await self._redis.script_load(LuaScript.PUT_ITEM)
        self._sha = sha.decode() if isinstance(sha, bytes) else str(sha)
        return self._sha


class _RedisBucket(RedisBucket):
    """pyrate-limiter's Redis bucket, which also trims and expires its key.

    pyrate-limiter leaks old entries from a background task per bucket; with a bucket per
    client that would be one task per address ever seen. Instead every put trims the entries
    that left the window and lets the key expire once its window is over.
    """

    def __init__(
        self, rates: list[Rate], redis: Redis, bucket_key: str, script: _Script, sha: str
    ) -> None:
        super().__init__(rates, redis, bucket_key, sha)
        self._redis = redis
        self._script = script
        self._window_ms = max(rate.interval for rate in rates)

    def put(self, item: RateItem) -> Awaitable[bool]:
        return self._put(item)

    async def _put(self, item: RateItem) -> bool:
        try:
            allowed = await cast(Awaitable[bool], super().put(item))
        except NoScriptError:
            self.script_hash = await self._script.reload()
            allowed = await cast(Awaitable[bool], super().put(item))
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(self.bucket_key, 0, item.timestamp - self._window_ms - 1)
            pipe.pexpire(self.bucket_key, self._window_ms)
            await pipe.execute()
        return allowed


class _IdentityBucketFactory(BucketFactory):
    """Routes each item (named by its identity) to that identity's own bucket."""

    def __init__(self, prefix: str, rate: RateLimit, redis: Redis, script: _Script) -> None:
        self.prefix = prefix
        self.window_ms = rate.seconds * 1000
        self.rates = [Rate(rate.limit, self.window_ms)]
        self.redis = redis
        self.script = script

    def key(self, identity: str) -> str:
        return f"{self.prefix}:{identity}"

    def wrap_item(self, name: str, weight: int = 1) -> RateItem:
        return RateItem(name, time.time_ns() // 1_000_000, weight=weight)

    async def _bucket(self, item: RateItem) -> AbstractBucket:
        return _RedisBucket(
            self.rates, self.redis, self.key(item.name), self.script, await self.script.sha()
        )

    def get(self, item: RateItem) -> Awaitable[AbstractBucket]:
        return self._bucket(item)

    async def retry_after(self, identity: str) -> int:
        """Seconds until the oldest request in the window leaves it (at least 1)."""
        now = time.time_ns() // 1_000_000
        oldest = await self.redis.zrangebyscore(
            self.key(identity), now - self.window_ms, "+inf", start=0, num=1, withscores=True
        )
        if not oldest:
            return 1
        timestamp = float(cast(tuple[bytes, float], oldest[0])[1])
        return max(1, math.ceil((timestamp + self.window_ms - now + 1) / 1000))


# --- limits -------------------------------------------------------------------------


class _RateLimiter(RateLimiter):
    """fastapi-limiter's dependency, keyed by identity alone (see the module docstring)."""

    async def __call__(self, request: Request, response: Response) -> None:
        identity = await self.identifier(request)
        if not await self.limiter.try_acquire_async(identity, blocking=self.blocking):
            await self.callback(request, response)


class Limit:
    """One rate limit: a fastapi-limiter dependency over per-identity Redis buckets."""

    def __init__(
        self,
        name: str,
        rate: RateLimit,
        *,
        prefix: str,
        redis: Redis,
        script: _Script,
        identify: Identify,
        refusal: str,
    ) -> None:
        self.name = name
        self.rate = rate
        self.factory = _IdentityBucketFactory(f"{prefix}:{name}", rate, redis, script)
        self.limiter = Limiter(self.factory)
        self._identify = identify
        self._refusal = refusal
        self.dependency = _RateLimiter(
            limiter=self.limiter, identifier=identify, callback=self._refuse, blocking=False
        )

    async def refusal(self, identity: str) -> TooManyRequestsError:
        retry_after = await self.factory.retry_after(identity)
        return TooManyRequestsError(
            f"{self._refusal} (limit {self.rate.limit} per {self.rate.seconds} s); "
            f"retry in {retry_after} s",
            retry_after=retry_after,
        )

    async def _refuse(self, request: Request, _response: Response) -> None:
        raise await self.refusal(await self._identify(request))

    async def check(self, request: Request, response: Response) -> None:
        """Count this request; raise :class:`TooManyRequestsError` over the limit."""
        try:
            await self.dependency(request, response)
        except RedisError as exc:
            log.error("ratelimit.unavailable", limit=self.name, error_type=type(exc).__name__)
            raise ServiceUnavailableError(
                "the rate limiter (Redis) is unreachable; try again shortly"
            ) from None

    async def hit(self, identity: str) -> TooManyRequestsError | None:
        """Count one event for ``identity`` outside a route; the refusal when over."""
        if await self.limiter.try_acquire_async(identity, blocking=False):
            return None
        return await self.refusal(identity)


@dataclass(frozen=True, slots=True)
class RateLimits:
    token: Limit
    api: Limit

    @classmethod
    def build(cls, settings: Settings, redis: Redis) -> RateLimits:
        proxies = list(settings.trusted_proxies)

        async def by_client(request: Request) -> str:
            return client_address(request, proxies)

        async def by_user(request: Request) -> str:
            return f"user-{request.state.user_id}"

        script = _Script(redis)
        prefix = f"{KEY_PREFIX}:{settings.queue_name}"
        return cls(
            token=Limit(
                "token",
                parse_rate(settings.rate_limit_token),
                prefix=prefix,
                redis=redis,
                script=script,
                identify=by_client,
                refusal="too many token requests from this address",
            ),
            api=Limit(
                "api",
                parse_rate(settings.rate_limit_api),
                prefix=prefix,
                redis=redis,
                script=script,
                identify=by_user,
                refusal="too many API requests for this user",
            ),
        )

    def close(self) -> None:
        for limit in (self.token, self.api):
            limit.limiter.close()


def _limits(request: Request) -> RateLimits:
    limits: RateLimits = request.app.state.rate_limits
    return limits


async def limit_token_requests(request: Request, response: Response) -> None:
    """Dependency of ``POST /auth/token``: per client, against password guessing."""
    await _limits(request).token.check(request, response)


async def limit_api_requests(request: Request, response: Response, user: CurrentUser) -> None:
    """Dependency of every management route: authenticates, then counts per user."""
    request.state.user_id = user.id
    await _limits(request).api.check(request, response)
