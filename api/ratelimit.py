"""The management API's rate limits: per client on the token endpoint (against password
guessing), per user on every other route. Kept in Redis (shared/ratelimit.py), so every
API replica counts in the same buckets; the client is who ``KAVE_TRUSTED_PROXIES`` allow
it to be (shared/client_address.py). Over a limit: 429 with ``Retry-After``. Redis
unreachable: 503, never an open door.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from fastapi import Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.deps import CurrentUser
from shared.client_address import client_address
from shared.ratelimit import RateLimitStore, RedisRateLimit
from shared.settings import Settings, parse_rate
from shared.web.errors import ServiceUnavailableError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ApiRateLimits:
    token: RedisRateLimit
    api: RedisRateLimit

    @classmethod
    def build(cls, settings: Settings, redis: Redis) -> ApiRateLimits:
        store = RateLimitStore(redis, settings.queue_name)
        return cls(
            token=store.limit(
                "token",
                parse_rate(settings.rate_limit_token),
                refusal="too many token requests from this address",
            ),
            api=store.limit(
                "api",
                parse_rate(settings.rate_limit_api),
                refusal="too many API requests for this user",
            ),
        )


async def _count(limit: RedisRateLimit, identity: str) -> None:
    try:
        refusal = await limit.hit(identity)
    except RedisError as exc:
        log.error("ratelimit.unavailable", limit=limit.name, error_type=type(exc).__name__)
        raise ServiceUnavailableError(
            "the rate limiter (Redis) is unreachable; try again shortly"
        ) from None
    if refusal is not None:
        raise refusal


def _limits(request: Request) -> ApiRateLimits:
    limits: ApiRateLimits = request.app.state.rate_limits
    return limits


async def limit_token_requests(request: Request) -> None:
    """Dependency of ``POST /auth/token``: per client, against password guessing."""
    settings: Settings = request.app.state.settings
    identity = client_address(request, list(settings.trusted_proxies))
    await _count(_limits(request).token, identity)


async def limit_api_requests(request: Request, user: CurrentUser) -> None:
    """Dependency of every management route: authenticates, then counts per user."""
    await _count(_limits(request).api, f"user-{user.id}")
