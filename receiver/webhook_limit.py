"""The per-client limit on refused webhook POSTs, shared by every replica through Redis.

Every webhook POST the gate (:mod:`receiver.signature`) refuses for something the client
could have done right (401 missing or wrong signature, 400 bad form or too many fields,
413 too large, 415 not form-encoded) counts one failure against the client's address
(``client_address``: ``X-Forwarded-For`` believed only from ``KAVE_TRUSTED_PROXIES``;
IPv6 per /64). Past ``KAVE_RATE_LIMIT_WEBHOOK_SIGNATURE_FAILURES`` failures in the window,
the refusal becomes 429 with ``Retry-After`` (when the oldest failure leaves the window).
A 429 is not counted again, so ``Retry-After`` is honest; a 503 (no key configured) is our
fault and never counted.

**When the limit is checked.** The refusals that need no body (415, a declared length
over the cap, and a missing signature header) are counted, and answered 429 past the
limit, *before* a byte of the body is read: an unsigned flood costs a Redis round trip
per request and nothing more. A request that carries ``X-Mandrill-Signature`` is always
read and verified, even from a client over the limit, and answered 200 if it verifies;
only if it fails too is it answered 429. So:

* **a correctly signed batch is never counted and never refused.** Not by its own
  client's earlier failures (Mandrill behind a just-reset key gets through with its first
  good signature), and not by an attacker's: the limit is per address, and even an
  attacker who *shares* Mandrill's address (Mandrill's webhook IPs serve every Mandrill
  account; anyone can point a webhook of their own account at this URL, signed with their
  own key) can only get their own requests refused;
* the price: a client over the limit that sends a forged header still costs its body's
  read and verification. That cost is bounded anyway: the body cap, the field limit, and
  verification off the event loop for large bodies (see :mod:`receiver.signature`).

The correctly signed path never talks to this module, so the hot path pays nothing.
If Redis is unreachable the refusal goes out as it is (401, 400, ...), never 429 or 503.

The window is a sliding log in one Redis sorted set per client, kept by one Lua script
(trim, count, add, expire) with Redis's own clock, so replicas on skewed hosts agree.
"""

from __future__ import annotations

import math
import uuid

import structlog
from fastapi import Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.client_address import client_address
from shared.settings import RateLimit, Settings, parse_rate
from shared.web.errors import TooManyRequestsError

log = structlog.get_logger(__name__)

KEY_PREFIX = "kave:ratelimit"

# Returns 0 when the failure was counted under the limit, else the milliseconds until
# the oldest failure in the window leaves it (the failure is then not counted).
_COUNT_FAILURE = """
local key = KEYS[1]
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, window)
  return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


class WebhookFailureLimit:
    """Counts refused webhook POSTs per client (see the module docstring)."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.rate: RateLimit = parse_rate(settings.rate_limit_webhook_signature_failures)
        self.prefix = f"{KEY_PREFIX}:{settings.queue_name}:webhook-failures"
        self.proxies = list(settings.trusted_proxies)
        self._script = redis.register_script(_COUNT_FAILURE)

    def key(self, identity: str) -> str:
        return f"{self.prefix}:{identity}"

    async def count_failure(self, request: Request) -> TooManyRequestsError | None:
        """Count one refusal of this client; the 429 to answer instead when over."""
        identity = client_address(request, self.proxies)
        window_ms = self.rate.seconds * 1000
        try:
            wait_ms = int(
                await self._script(
                    keys=[self.key(identity)],
                    args=[window_ms, self.rate.limit, uuid.uuid4().hex],
                )
            )
        except RedisError as exc:
            log.warning("ratelimit.unavailable", limit="webhook-failures", error=type(exc).__name__)
            return None
        if wait_ms <= 0:
            return None
        retry_after = max(1, math.ceil(wait_ms / 1000))
        log.warning("webhook.failures_limited", client=identity, retry_after=retry_after)
        return TooManyRequestsError(
            "too many refused webhook requests from this address (wrong or missing "
            "signature, bad form, too large); check KAVE_MANDRILL_WEBHOOK_URLS and "
            f"KAVE_MANDRILL_WEBHOOK_KEYS (limit {self.rate.limit} per {self.rate.seconds} s); "
            f"retry in {retry_after} s",
            retry_after=retry_after,
        )
