"""The ledger of accepted deliveries that no worker has recorded yet.

A 200 means the batch is durable, and its task message is what brings it to a worker.
Redis can still drop that message after the 200. kombu's Redis transport pops it (BRPOP)
and only then records it as unacknowledged, so a worker killed between the two loses it
(celery/celery#7950, celery/kombu#305). Reconciliation (``worker.recovery.reconcile``) queues
again deliveries that have a row but never finished. A delivery whose message was lost
before any attempt has no row, and nothing else knew of it.

So the receiver writes a small entry per delivery, ``kave:accepted:<queue>:<delivery
id>``, holding its envelope. It is written in the same command as the body. The worker deletes
it together with the body's Redis copy when the delivery ends. Reconciliation queues
again an entry older than ``KAVE_RECONCILE_AFTER_SECONDS`` whose delivery has no row, and
drops an entry whose delivery has one (the row's own reconciliation takes over).

An entry's task may also still be waiting in the queue, behind a backlog older than that
age: reconciliation leaves alone every entry queued since the next message in line was
(``AcceptedLedger.waiting_since``), so a long queue is not queued again on top of itself.

Why one key per delivery, not a hash or a sorted set: the receiver writes it with the
body in one ``MSET`` and the worker deletes it with the body in one ``DEL``, so neither
side pays a round trip more. Reconciliation finds the entries with ``SCAN``, over a
keyspace that holds only work in flight.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

import structlog
from redis import Redis

from shared.contract import Envelope, EnvelopeError, payload_redis_key

log = structlog.get_logger(__name__)

# Entries read per MGET while reconciling.
READ_BATCH = 500


def accepted_entry(envelope: Envelope, queued_at: float) -> bytes:
    """An entry's value: the envelope, and when its task was last queued (unix time)."""
    return json.dumps({"envelope": envelope.to_message(), "queued_at": queued_at}).encode()


@dataclass(frozen=True, slots=True)
class AcceptedDelivery:
    key: str
    envelope: Envelope
    queued_at: float


class AcceptedLedger:
    """The entries of one deployment, ``kave:accepted:<queue name>:<delivery id>``.

    Scoped by the queue, as the rate limiter's keys are: deployments that share a Redis
    never queue each other's deliveries again.
    """

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self.prefix = f"kave:accepted:{queue_name}:"

    def key(self, delivery_id: str) -> str:
        return self.prefix + delivery_id

    def receiver_keys(self, delivery_id: str) -> tuple[str, str]:
        """What the receiver stores in Redis for a delivery besides its task message:
        the body's copy (ordinary sizes) and the ledger entry."""
        return payload_redis_key(delivery_id), self.key(delivery_id)

    def queued_before(self, redis: Redis, cutoff: float) -> Iterator[AcceptedDelivery]:
        """The entries whose task was last queued before ``cutoff`` (unix time)."""
        pattern = _glob_escape(self.prefix) + "*"
        keys = (key.decode() for key in redis.scan_iter(match=pattern, count=READ_BATCH))
        while chunk := list(islice(keys, READ_BATCH)):
            values: list[bytes | None] = redis.mget(chunk)  # type: ignore[assignment]
            for key, value in zip(chunk, values, strict=True):
                if value is None:
                    continue  # its delivery ended meanwhile
                found = _parse(key, value)
                if found is not None and found.queued_at < cutoff:
                    yield found

    def waiting_since(self, redis: Redis) -> float | None:
        """When the next message in the queue's line was queued (unix time); None when
        the queue is empty or that message names no delivery.

        kombu's Redis transport pushes a task onto one end of the queue's list and
        workers pop the other (messages it restores after a visibility timeout go back
        at the popping end, ahead of the line), so every task still waiting was queued
        at or after this time. A delivery queued before it is not waiting: it is being
        worked on, or its message is lost.
        """
        message = redis.lindex(self.queue_name, -1)
        envelope = queued_envelope(message) if message is not None else None
        if envelope is None:
            return None
        key = self.key(envelope.delivery_id)
        value = redis.get(key)
        found = _parse(key, value) if value is not None else None
        if found is not None:
            return found.queued_at
        # Its delivery ended (this is a spare copy of its message): it was queued no
        # earlier than it was accepted.
        try:
            return datetime.fromisoformat(envelope.received_at).timestamp()
        except ValueError:
            return None


def queued_envelope(message: bytes | str) -> Envelope | None:
    """The envelope a ``process_delivery`` message in the queue's list carries, read
    from kombu's Redis format (JSON, the body base64-encoded: Celery's protocol 2,
    ``[args, kwargs, embed]``); None for anything else. Reading it here, rather than
    through a kombu channel, costs one LINDEX and no consumer."""
    try:
        payload = json.loads(message)
        body = payload["body"]
        if payload["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        _, kwargs, _ = json.loads(body)
        return Envelope.from_message(kwargs["envelope"])
    except (ValueError, KeyError, TypeError, AttributeError, EnvelopeError):
        return None


def _glob_escape(text: str) -> str:
    """``text`` matched literally by SCAN's glob-style MATCH."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def _parse(key: str, value: bytes | str) -> AcceptedDelivery | None:
    try:
        data = json.loads(value)
        return AcceptedDelivery(
            key, Envelope.from_message(data["envelope"]), float(data["queued_at"])
        )
    except (ValueError, KeyError, TypeError, EnvelopeError):
        # Not ours to act on; left in place for a person to look at.
        log.warning("accepted.unreadable_entry", key=key)
        return None


def mark_queued(redis: Redis, found: AcceptedDelivery, queued_at: float) -> None:
    """Record that the entry's task was queued again (only while the entry exists)."""
    redis.set(found.key, accepted_entry(found.envelope, queued_at), xx=True)
