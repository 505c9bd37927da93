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
limit, *before* a byte of the body is read: an unsigned flood costs the limit's Redis
round trips per request and nothing more. A request that carries ``X-Mandrill-Signature`` is always
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

The window is the API's (:mod:`shared.ratelimit`): one Redis sorted set per client,
``kave:ratelimit:<KAVE_QUEUE_NAME>:webhook-failures:<client>``, shared by every replica.
"""

from __future__ import annotations

import structlog
from fastapi import Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.client_address import client_address
from shared.ratelimit import RateLimitStore
from shared.settings import Settings, parse_rate
from shared.web.errors import TooManyRequestsError

log = structlog.get_logger(__name__)


class WebhookFailureLimit:
    """Counts refused webhook POSTs per client (see the module docstring)."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.proxies = list(settings.trusted_proxies)
        self.limit = RateLimitStore(redis, settings.queue_name).limit(
            "webhook-failures",
            parse_rate(settings.rate_limit_webhook_signature_failures),
            refusal="too many refused webhook requests from this address (wrong or missing "
            "signature, bad form, too large); check KAVE_MANDRILL_WEBHOOK_URLS and "
            "KAVE_MANDRILL_WEBHOOK_KEYS",
        )

    async def count_failure(self, request: Request) -> TooManyRequestsError | None:
        """Count one refusal of this client; the 429 to answer instead when over."""
        identity = client_address(request, self.proxies)
        try:
            over = await self.limit.hit(identity)
        except RedisError as exc:
            log.warning("ratelimit.unavailable", limit=self.limit.name, error=type(exc).__name__)
            return None
        if over is not None:
            log.warning("webhook.failures_limited", client=identity, retry_after=over.retry_after)
        return over
