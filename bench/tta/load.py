"""One step of offered load and its figures: time to agent per email, p50, p99.

The sender is open-loop: the i-th POST of a step leaves at ``start + i / rate`` whatever
the answers before it (a closed loop would slow down with the stack and hide the queue).
Each POST is one Mandrill batch of one email, about 20 KB on the wire, signed as ``kave send``
signs (``loadkit.payloads``). Its send time is the wall clock just before the request;
the handler records the wall clock when the hand-off's body was read (same machine, same
clock). Time to agent = arrival - send, matched by the email's Message-ID (Kave's
documents) or by the delivery id the receiver answered (the ceiling's stubs).

An email that never arrives within the drain time counts as infinitely late: a step
that loses or strands mail cannot pass for fast.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import psutil
from redis.asyncio import Redis

from bench.tta.handler import match_key
from loadkit import payloads
from loadkit.percentiles import percentile
from shared.webhook import WEBHOOK_PATH

P99_LIMIT_MS = 250.0
# One text + HTML email with no attachment, of the words that bring its batch (a
# form-encoded, signed POST) to about 20 KB. No attachment: the random bytes loadkit
# makes one of would be a "PDF" that the same worker's text conversion spends about a
# second failing on (worker/text/), and the stage would measure that instead.
TEXT_WORDS = 530
# A queue that holds more than the p99 limit's worth of the offered rate at the end of a
# step (and more than this floor) is growing: the stack does not keep up.
BACKLOG_FLOOR = 5


@dataclass(frozen=True)
class Target:
    receiver: str  # the receiver's base URL
    redis_url: str
    queue: str  # its worker's queue, whose length is the backlog


@dataclass
class Email:
    message_id: str  # match key, without angle brackets
    body: bytes
    headers: dict[str, str]
    sent_at: float = 0.0
    status: int = 0
    delivery_id: str | None = None


@dataclass
class Step:
    stack: str
    offered: float
    seconds: float
    sent: int = 0
    accepted: int = 0
    delivered: int = 0
    achieved: float = 0.0
    p50_ms: float = math.inf
    p99_ms: float = math.inf
    backlog_end: int = 0
    backlog_max: int = 0
    repeats: int = 0
    load_average: list[float] = field(default_factory=list)
    # The longest fsync of a probe beside the stack's files during the step (its disk's
    # stalls: loadkit.fsync_probe); None when not probed.
    fsync_max_ms: float | None = None

    @property
    def grows(self) -> bool:
        return self.backlog_end > max(BACKLOG_FLOOR, self.offered * P99_LIMIT_MS / 1000)

    @property
    def sustained(self) -> bool:
        """Within the limit: every batch accepted, p99 <= 250 ms, the queue not growing."""
        return self.accepted == self.sent and self.p99_ms <= P99_LIMIT_MS and not self.grows

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("p50_ms", "p99_ms"):  # JSON has no infinity: null is "never arrived"
            values[name] = None if math.isinf(values[name]) else round(values[name], 1)
        values["achieved"] = round(self.achieved, 2)
        return {**values, "grows": self.grows, "sustained": self.sustained}


def summarise(step: Step, emails: Sequence[Email], arrived: dict[str, float]) -> Step:
    """Fill ``step``'s figures from what was sent and what the handler recorded."""
    ok = [e for e in emails if e.status == 200]
    step.sent, step.accepted = len(emails), len(ok)
    latencies: list[float] = []
    last_arrival = 0.0
    for email in ok:
        at = arrived.get(email.message_id)
        if at is None and email.delivery_id:
            at = arrived.get(match_key(email.delivery_id))
        if at is None:
            latencies.append(math.inf)
            continue
        latencies.append((at - email.sent_at) * 1000)
        last_arrival = max(last_arrival, at)
    step.delivered = sum(1 for value in latencies if not math.isinf(value))
    step.p50_ms = percentile(latencies, 0.50)
    step.p99_ms = percentile(latencies, 0.99)
    if step.delivered and emails:
        first_sent = min(e.sent_at for e in emails)
        step.achieved = step.delivered / max(last_arrival - first_sent, 1e-6)
    return step


def sustained_rate(steps: Sequence[Step]) -> float:
    """The highest offered rate of an unbroken run of sustained steps from the lowest
    (a lucky step above a failed one does not count); 0 when even the first failed."""
    best = 0.0
    for step in sorted(steps, key=lambda s: s.offered):
        if not step.sustained:
            break
        best = step.offered
    return best


def make_emails(count: int, seed: int) -> list[Email]:
    emails = []
    for i in range(count):
        event = payloads.inbound_event(0, text_words=TEXT_WORDS, seed=seed + i)
        signed = payloads.sign(payloads.events_json([event]))
        message_id = match_key(event["msg"]["headers"]["Message-Id"])
        emails.append(Email(message_id, signed.body, signed.headers))
    return emails


async def _post(client: httpx.AsyncClient, url: str, email: Email) -> None:
    email.sent_at = time.time()
    try:
        response = await client.post(url, content=email.body, headers=email.headers)
    except httpx.HTTPError:
        email.status = -1
        return
    email.status = response.status_code
    if response.status_code == 200:
        email.delivery_id = response.json().get("delivery_id")


async def _send(target: Target, rate: float, emails: list[Email], redis: Redis, step: Step) -> None:
    url = target.receiver + WEBHOOK_PATH
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.monotonic() + 0.05
        posts = []
        for i, email in enumerate(emails):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if i % max(int(rate / 2), 1) == 0:  # about two backlog samples a second
                step.backlog_max = max(step.backlog_max, int(await redis.llen(target.queue)))
            posts.append(asyncio.create_task(_post(client, url, email)))
        await asyncio.gather(*posts)
    step.backlog_end = int(await redis.llen(target.queue))
    step.backlog_max = max(step.backlog_max, step.backlog_end)


def send_step(target: Target, rate: float, emails: list[Email], step: Step) -> None:
    async def run() -> None:
        redis = Redis.from_url(target.redis_url)
        try:
            await _send(target, rate, emails, redis, step)
        finally:
            await redis.aclose()

    asyncio.run(run())
    step.load_average = [round(x, 2) for x in psutil.getloadavg()]


def wait_arrivals(handler_base: str, emails: Sequence[Email], timeout: float) -> dict[str, Any]:
    """The handler's records once every accepted email arrived, or at ``timeout``."""
    deadline = time.monotonic() + timeout
    wanted = {e.message_id for e in emails if e.status == 200}
    while True:
        record: dict[str, Any] = httpx.get(handler_base + "/received", timeout=30).json()
        missing = wanted.difference(record["arrived"])
        # The ceiling's stubs carry the delivery id, not the Message-ID.
        by_delivery = {match_key(e.delivery_id): e.message_id for e in emails if e.delivery_id}
        missing -= {by_delivery[key] for key in record["arrived"] if key in by_delivery}
        if not missing or time.monotonic() > deadline:
            return record
        time.sleep(0.25)
