"""A Sentinel failover under traffic, and what became of every email sent.

The fault test (``tests/fault/test_sentinel_failover.py``) and the bench
(``bench/failover_bench.py``) drive the same scenario with :class:`FailoverRun`, on a
pipeline they started (a receiver and workers configured with Sentinel):

1. senders post batches of inbound emails as Mandrill does: one batch at a time per
   sender, anything but 200 sent again after a pause;
2. once a share of them is accepted, the replica is cut off its primary for a moment
   (``Topology.partition``) while the workers are paused (a backlog), then the primary
   is SIGKILLed: what only it held is gone, unless a 200 waited for the replica;
3. the Sentinels promote the replica; the old primary is started again, as its
   supervisor would, as the replica of the node the Sentinels now name the primary;
4. the senders finish; the queue drains; ``kave reconcile`` runs, as beat would; and
   every email sent is looked up: stored once, twice, or never (lost).

A batch answered 200 whose emails were never stored is lost; one refused (503) but
stored anyway (its body reached the replica before the refusal) must still be one email
once Mandrill's resend is stored: the workers' deduplication.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from loadkit.payloads import events_json, inbound_event, sign
from loadkit.redis_topology import Topology
from shared.accepted import AcceptedLedger
from shared.models import Delivery, DeliveryStatus, Email
from shared.redis_connect import redis_client
from shared.settings import Settings
from shared.webhook import WEBHOOK_PATH

# Seconds between Mandrill's retries here (Mandrill's own start at minutes).
RETRY_PAUSE = 0.2


@dataclass(frozen=True)
class FailoverPlan:
    emails: int = 150
    batch_size: int = 5
    senders: int = 2
    # The senders spread their batches over about this long, so that the failover
    # lands mid-stream (Mandrill itself sends a URL's batches about a minute apart).
    stream_seconds: float = 8.0
    # The primary dies once this share of the batches was accepted.
    kill_after_share: float = 0.35
    # How long the replica is cut off before the primary dies (0: not at all).
    partition_seconds: float = 1.5


@dataclass
class _Batch:
    body: bytes
    headers: dict[str, str]
    message_ids: list[str]


@dataclass
class FailoverOutcome:
    """What a run did and what became of it; ``figures`` is its printable summary."""

    emails_sent: int = 0
    batches_accepted: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    emails_stored_once: int = 0
    emails_stored_twice_or_more: int = 0
    emails_lost: int = 0
    batches_lost: int = 0
    # Deliveries that were answered 503 yet reached a worker (their resend is the 200).
    refused_deliveries_processed: int = 0
    seconds_to_promotion: float = 0.0
    seconds_to_replica_back: float = 0.0
    seconds_to_settle: float = 0.0
    seconds_total: float = 0.0
    worker_restarts: list[str] = field(default_factory=list)
    audit_clean: bool = False
    audit_output: str = ""

    def figures(self) -> dict[str, object]:
        return {
            "emails_sent": self.emails_sent,
            "batches_accepted": self.batches_accepted,
            "refusals": dict(self.refusals),
            "emails_stored_once": self.emails_stored_once,
            "emails_stored_twice_or_more": self.emails_stored_twice_or_more,
            "emails_lost": self.emails_lost,
            "batches_lost": self.batches_lost,
            "refused_deliveries_processed": self.refused_deliveries_processed,
            "seconds_to_promotion": round(self.seconds_to_promotion, 1),
            "seconds_to_replica_back": round(self.seconds_to_replica_back, 1),
            "seconds_to_settle": round(self.seconds_to_settle, 1),
            "seconds_total": round(self.seconds_total, 1),
            "worker_restarts": len(self.worker_restarts),
            "audit_clean": self.audit_clean,
        }


@dataclass
class FailoverRun:
    topology: Topology
    settings: Settings
    receiver_url: str
    engine: Engine
    # Starts again every worker that exited (what a restart policy does); one line each.
    restart_workers: Callable[[], list[str]]
    # Stops (True) and continues (False) every worker's processes: SIGSTOP, SIGCONT.
    pause_workers: Callable[[bool], None]
    env: dict[str, str]
    cwd: Path
    webhook_key: str
    webhook_url: str
    outcome: FailoverOutcome = field(default_factory=FailoverOutcome)
    _accepted: dict[str, _Batch] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, plan: FailoverPlan) -> FailoverOutcome:
        started = time.monotonic()
        batches = self._batches(plan)
        self.outcome.emails_sent = plan.emails
        pending = list(reversed(batches))
        interval = plan.stream_seconds * plan.senders / len(batches)
        senders = [
            threading.Thread(target=self._send_all, args=(pending, interval), daemon=True)
            for _ in range(plan.senders)
        ]
        for sender in senders:
            sender.start()
        self._wait(lambda: len(self._accepted) >= len(batches) * plan.kill_after_share, 120)
        self._fail_over(plan)
        for sender in senders:
            sender.join(timeout=300)
        settling = time.monotonic()
        self._settle()
        self.outcome.seconds_to_settle = time.monotonic() - settling
        self._count()
        self.outcome.seconds_total = time.monotonic() - started
        return self.outcome

    # --- traffic ------------------------------------------------------------------

    def _batches(self, plan: FailoverPlan) -> list[_Batch]:
        batches = []
        for start in range(0, plan.emails, plan.batch_size):
            events = [inbound_event(0) for _ in range(min(plan.batch_size, plan.emails - start))]
            signed = sign(events_json(events), key=self.webhook_key, url=self.webhook_url)
            ids = [str(event["msg"]["headers"]["Message-Id"]) for event in events]
            batches.append(_Batch(signed.body, signed.headers, ids))
        return batches

    def _send_all(self, pending: list[_Batch], interval: float) -> None:
        with httpx.Client(base_url=self.receiver_url, timeout=10) as client:
            while True:
                with self._lock:
                    if not pending:
                        return
                    batch = pending.pop()
                self._send(client, batch)
                time.sleep(interval)

    def _send(self, client: httpx.Client, batch: _Batch) -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                response = client.post(WEBHOOK_PATH, content=batch.body, headers=batch.headers)
            except httpx.HTTPError as exc:
                self._refused(type(exc).__name__)
            else:
                if response.status_code == 200:
                    with self._lock:
                        self._accepted[response.json()["delivery_id"]] = batch
                    return
                self._refused(str(response.status_code))
            time.sleep(RETRY_PAUSE)
        raise TimeoutError("the receiver never accepted a batch")

    def _refused(self, reason: str) -> None:
        with self._lock:
            self.outcome.refusals[reason] += 1

    # --- the failover -------------------------------------------------------------

    def _fail_over(self, plan: FailoverPlan) -> None:
        topology = self.topology
        old_primary = topology.primary
        replica = topology.replicas[0]
        if plan.partition_seconds:
            # The workers fall behind too (a backlog, as after a burst): what is accepted
            # now waits in the queue, on the primary alone unless replicas acknowledged it.
            self.pause_workers(True)
            topology.partition(replica)
            time.sleep(plan.partition_seconds)
        old_primary.kill()
        killed_at = time.monotonic()
        topology.heal(replica)
        self.pause_workers(False)
        self._wait(lambda: topology.sentinel_primary_port() not in (None, old_primary.port), 60)
        self.outcome.seconds_to_promotion = time.monotonic() - killed_at
        # Its supervisor starts it again as the new primary's replica, having asked the
        # Sentinels which node that is (as the Redis Helm charts' start scripts do).
        # Started as a primary of its own, the Sentinels would convert it too, but only
        # some 10 s after they see it back.
        new_port = topology.sentinel_primary_port()
        old_primary.args = [*old_primary.args, "--replicaof", "127.0.0.1", str(new_port)]
        old_primary.start()
        topology.wait_for_replicas(1, timeout=60)
        self.outcome.seconds_to_replica_back = time.monotonic() - killed_at

    # --- the end state ------------------------------------------------------------

    def _settle(self) -> None:
        """Until the queue is drained, reconciliation has run, and every accepted delivery
        either finished or is known to be gone (no row, no ledger entry)."""
        client = redis_client(self.settings, socket_timeout=5, socket_connect_timeout=5)
        ledger = AcceptedLedger(self.settings.queue_name)

        def drained() -> bool:
            self.outcome.worker_restarts += self.restart_workers()
            return client.llen(self.settings.queue_name) == 0

        self._wait(drained, 120)
        time.sleep(1)
        reconciled = self._kave(["reconcile", "--older-than", "1"])
        if reconciled.returncode != 0:
            raise RuntimeError("kave reconcile failed: " + reconciled.stdout + reconciled.stderr)

        last_reconcile = [time.monotonic()]

        def settled() -> bool:
            self.outcome.worker_restarts += self.restart_workers()
            if time.monotonic() - last_reconcile[0] > 15:
                # As beat does every interval: rows left unfinished are queued again.
                self._kave(["reconcile", "--older-than", "5"])
                last_reconcile[0] = time.monotonic()
            finished = self._finished()
            for delivery_id in self._accepted:
                if delivery_id in finished:
                    continue
                if client.exists(ledger.key(delivery_id)) or self._has_row(delivery_id):
                    return False  # still to come
            return client.llen(self.settings.queue_name) == 0 and not client.hlen("unacked")

        # Unacknowledged messages of the worker the failover cut off come back after
        # the visibility timeout; the bound leaves room for it.
        self._wait(settled, self.settings.visibility_timeout_seconds + 120)
        audit = self._kave(["audit", "--grace", "0"])
        self.outcome.audit_clean = audit.returncode == 0
        self.outcome.audit_output = audit.stdout + audit.stderr

    def _finished(self) -> set[str]:
        with Session(self.engine) as session:
            return {
                str(found)
                for found in session.scalars(
                    select(Delivery.id).where(
                        Delivery.status.in_([DeliveryStatus.PROCESSED, DeliveryStatus.FAILED])
                    )
                )
            }

    def _has_row(self, delivery_id: str) -> bool:
        with Session(self.engine) as session:
            return bool(
                session.scalar(
                    select(func.count()).select_from(Delivery).where(Delivery.id == delivery_id)
                )
            )

    def _count(self) -> None:
        with Session(self.engine) as session:
            stored = Counter(session.scalars(select(Email.message_id)))
            delivery_ids = {str(found) for found in session.scalars(select(Delivery.id))}
        outcome = self.outcome
        outcome.batches_accepted = len(self._accepted)
        sent_ids = {
            message_id for batch in self._accepted.values() for message_id in batch.message_ids
        }
        for batch in self._accepted.values():
            missing = [message_id for message_id in batch.message_ids if not stored[message_id]]
            outcome.emails_lost += len(missing)
            outcome.batches_lost += bool(missing)
        outcome.emails_stored_once = sum(1 for count in stored.values() if count == 1)
        outcome.emails_stored_twice_or_more = sum(1 for count in stored.values() if count > 1)
        outcome.refused_deliveries_processed = len(delivery_ids - set(self._accepted))
        # Nothing stored that was not sent.
        unknown = set(stored) - sent_ids
        if unknown:
            raise AssertionError(f"{len(unknown)} stored emails were never accepted")

    # --- helpers ------------------------------------------------------------------

    def _kave(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own CLI, our own arguments
            [sys.executable, "-m", "kave.cli", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    @staticmethod
    def _wait(check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except Exception:  # noqa: S110 - a service mid-failover: not yet
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"not within {timeout:.0f} s: {check}")
            time.sleep(0.2)
