"""The receiver's one rate limit: webhook POSTs whose signature check failed, per client.

A correctly signed webhook is never counted and never refused. The buckets are the
shared per-identity Redis windows (shared/ratelimit.py), keyed by client address
(shared/client_address.py); the management API's limits live in api/ratelimit.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.client_address import client_address
from shared.ratelimit import RateLimitStore, RedisRateLimit
from shared.settings import Settings, parse_rate
from shared.web.errors import TooManyRequestsError, error_body

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RateLimits:
    webhook_signature_failures: RedisRateLimit

    @classmethod
    def build(cls, settings: Settings, redis: Redis) -> RateLimits:
        store = RateLimitStore(redis, settings.queue_name)
        return cls(
            webhook_signature_failures=store.limit(
                "webhook-signature",
                parse_rate(settings.rate_limit_webhook_signature_failures),
                refusal="too many webhook requests with a bad signature from this address: check "
                "KAVE_MANDRILL_WEBHOOK_URLS and KAVE_MANDRILL_WEBHOOK_KEYS",
            )
        )


class SignatureFailureLimitMiddleware:
    """Counts webhook POSTs the signature gate refused (401) per client; past the limit,
    the answer becomes 429 with ``Retry-After`` instead of 401.

    It acts only on the webhook path and only on 401 answers: a correctly signed batch is
    never counted and never refused, so a client over the limit (Mandrill behind a
    misconfigured key, say) gets through as soon as its signature is right. If Redis is
    unreachable the 401 goes out unchanged.
    """

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        replaced = False

        async def send_or_replace(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the body of the 401 we replaced
            if message["type"] == "http.response.start" and message["status"] == 401:
                refusal = await self._count_failure(scope)
                if refusal is not None:
                    replaced = True
                    answer = JSONResponse(
                        error_body(refusal.message), status_code=429, headers=refusal.headers
                    )
                    await answer(scope, receive, send)
                    return
            await send(message)

        await self.app(scope, receive, send_or_replace)

    async def _count_failure(self, scope: Scope) -> TooManyRequestsError | None:
        request = Request(scope)
        limits: RateLimits | None = getattr(request.app.state, "rate_limits", None)
        if limits is None:
            return None
        settings: Settings = request.app.state.settings
        identity = client_address(request, list(settings.trusted_proxies))
        try:
            refusal = await limits.webhook_signature_failures.hit(identity)
        except RedisError as exc:
            log.warning(
                "ratelimit.unavailable", limit="webhook-signature", error=type(exc).__name__
            )
            return None
        if refusal is not None:
            log.warning("webhook.signature_failures_limited", client=identity)
        return refusal
