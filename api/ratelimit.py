"""The management API's rate limits: per client on the token endpoint (against password
guessing), per account name on failed logins, per user or agent key on every other route
(a key may carry a rate of its own, ``kave keys create --rate``). Kept in
Redis (shared/ratelimit.py), so every API replica counts in the same buckets; the client
is who ``KAVE_TRUSTED_PROXIES`` allow it to be (shared/client_address.py). Over a limit:
429 with ``Retry-After``. Redis unreachable: 503, never an open door.

The per-account limit stops guessing one account's password from many addresses, which
the per-address limit cannot see. It counts failed logins only (each attempt is counted
first and given back once it succeeds), so a user who logs in often never meets it. Its
cost: someone who knows an account's name can keep it from getting new tokens for as long
as they keep failing faster than the limit; tokens already issued keep working. Names
that no user has are counted the same way, so a 429 does not tell which names exist.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import structlog
from fastapi import Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.client_address import client_address
from shared.ratelimit import RateLimitStore, RedisRateLimit, Taken
from shared.settings import RateLimit, Settings, parse_rate
from shared.web.errors import ServiceUnavailableError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ApiRateLimits:
    token: RedisRateLimit
    login_failures: RedisRateLimit
    api: RedisRateLimit
    store: RateLimitStore

    @classmethod
    def build(cls, settings: Settings, redis: Redis) -> ApiRateLimits:
        store = RateLimitStore(redis, settings.queue_name)
        return cls(
            token=store.limit(
                "token",
                parse_rate(settings.rate_limit_token),
                refusal="too many token requests from this address",
            ),
            login_failures=store.limit(
                "login-failures",
                parse_rate(settings.rate_limit_login_failures),
                refusal="too many failed logins for this account",
            ),
            api=store.limit(
                "api",
                parse_rate(settings.rate_limit_api),
                refusal="too many API requests for this user",
            ),
            store=store,
        )

    def own_rate(self, rate: RateLimit) -> RedisRateLimit:
        """The API limit at a key's own rate (its bucket is the key's alone)."""
        return self.store.limit("api", rate, refusal="too many API requests for this key")


def _unavailable(limit: RedisRateLimit, exc: RedisError) -> ServiceUnavailableError:
    log.error("ratelimit.unavailable", limit=limit.name, error_type=type(exc).__name__)
    return ServiceUnavailableError("the rate limiter (Redis) is unreachable; try again shortly")


async def _count(limit: RedisRateLimit, identity: str) -> None:
    try:
        refusal = await limit.hit(identity)
    except RedisError as exc:
        raise _unavailable(limit, exc) from None
    if refusal is not None:
        raise refusal


def account_identity(username: str) -> str:
    """The bucket of an account name. Hashed: a name typed at the login form is sometimes
    a password typed in the wrong field, and Redis keys are listed in the clear."""
    return "account-" + hashlib.sha256(username.encode("utf-8")).hexdigest()[:32]


def _limits(request: Request) -> ApiRateLimits:
    limits: ApiRateLimits = request.app.state.rate_limits
    return limits


async def limit_token_requests(request: Request) -> None:
    """Dependency of ``POST /auth/token``: per client, against password guessing."""
    settings: Settings = request.app.state.settings
    identity = client_address(request, list(settings.trusted_proxies))
    await _count(_limits(request).token, identity)


async def count_api_request(request: Request, bucket: str, rate: RateLimit | None) -> None:
    """Count one request of an authenticated caller (api/access/principal.py), at its own
    ``rate`` if it has one, else ``KAVE_RATE_LIMIT_API``."""
    limits = _limits(request)
    await _count(limits.api if rate is None else limits.own_rate(rate), bucket)


class LoginAttempt:
    """A login attempt counted against its account; :meth:`succeeded` uncounts it."""

    def __init__(self, limit: RedisRateLimit, taken: Taken) -> None:
        self._limit = limit
        self._taken = taken

    async def succeeded(self) -> None:
        try:
            await self._limit.give_back(self._taken)
        except RedisError as exc:
            # The token is issued anyway: one success left counted as a failure only
            # brings that account nearer its limit for one window.
            log.warning("ratelimit.give_back_failed", error_type=type(exc).__name__)


async def count_login_attempt(request: Request, username: str) -> LoginAttempt:
    """Count a login attempt of ``username``, or refuse it (429) when the account is over
    its failed-login limit, whatever the password."""
    limit = _limits(request).login_failures
    try:
        taken = await limit.take(account_identity(username))
    except RedisError as exc:
        raise _unavailable(limit, exc) from None
    if taken.refusal is not None:
        log.warning("auth.token_refused", reason="account_rate_limited")
        raise taken.refusal
    return LoginAttempt(limit, taken)
