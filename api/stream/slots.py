"""How many streams a caller holds open, counted in Redis so every API replica counts in
the same place.

One sorted set per caller; each open stream is a member scored by when its claim runs out.
A stream renews its claim while it runs and removes it when it ends; a replica that dies
leaves claims that simply run out (``CLAIM_SECONDS``). Opening trims run-out claims,
counts, and adds, in one script, so parallel opens cannot all slip under the limit.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

from redis.asyncio import Redis

CLAIM_SECONDS = 60

# KEYS[1]: the caller's set. ARGV: now, claim expiry, limit, member. 1 if claimed.
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], 2 * tonumber(ARGV[5]))
return 1
"""


class StreamSlots:
    def __init__(self, redis: Redis, queue_name: str, limit: int) -> None:
        self.redis = redis
        self.prefix = f"kave:streams:{queue_name}"
        self.limit = limit
        self._claim = redis.register_script(_CLAIM)

    def key(self, bucket: str) -> str:
        return f"{self.prefix}:{bucket}"

    async def claim(self, bucket: str) -> str | None:
        """A new stream's slot (its member name), or None when the caller has ``limit``."""
        member = uuid.uuid4().hex
        now = time.time()
        claimed = cast(
            Any,
            await self._claim(
                keys=[self.key(bucket)],
                args=[now, now + CLAIM_SECONDS, self.limit, member, CLAIM_SECONDS],
            ),
        )
        return member if int(claimed) else None

    async def renew(self, bucket: str, member: str) -> None:
        await self.redis.zadd(self.key(bucket), {member: time.time() + CLAIM_SECONDS}, xx=True)

    async def release(self, bucket: str, member: str) -> None:
        await self.redis.zrem(self.key(bucket), member)
