"""A 503 after a partial write, then Mandrill's resend: still one stored email.

When Redis fails mid-enqueue (a primary killed between storing a batch and answering,
a WAIT that times out after the write reached a replica), the receiver answers 503 but
the body and its ledger entry may survive, on the primary or on the replica promoted in
its place, where the receiver's clean-up cannot reach. Reconciliation then queues that
delivery, and Mandrill's resend arrives as a second delivery of the same batch. Here the
surviving write is made exactly as the receiver's ``MSET`` leaves it (body and ledger
entry, no task), the resend goes through the real receiver, the real worker processes
both: one email, one ``stored`` and one ``duplicate`` outcome per event.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from loadkit.payloads import events_json, inbound_event
from shared.accepted import AcceptedLedger, accepted_entry
from shared.contract import Envelope, payload_redis_key
from shared.models import DeliveryEvent, Email
from shared.settings import Settings
from tests import services
from tests.kave.support import kave
from tests.services import child_env, derive_settings
from tests.webhooks import post_events, signed_form, wait_for_deliveries


def test_a_surviving_partial_write_and_the_resend_store_one_email(
    base_settings: Settings, engine: Engine, redis_client: redis.Redis, tmp_path: Path
) -> None:
    settings = derive_settings(base_settings, queue_name=f"kave-partial-{uuid.uuid4().hex[:8]}")
    event = inbound_event(0)
    message_id = event["msg"]["headers"]["Message-Id"]
    events = events_json([event])
    # What survived of the refused attempt: body and ledger entry, written an hour ago.
    body, _ = signed_form(events)
    refused_id = str(uuid.uuid4())
    envelope = Envelope(
        delivery_id=refused_id,
        received_at=datetime.now(UTC).isoformat(),
        body_sha256=hashlib.sha256(body).hexdigest(),
        body_size=len(body),
        payload_store="redis",
        payload_key=payload_redis_key(refused_id),
        request_id="refused",
    )
    ledger = AcceptedLedger(settings.queue_name)
    redis_client.mset(
        {
            envelope.payload_key: body,
            ledger.key(refused_id): accepted_entry(envelope, time.time() - 3600),
        }
    )
    with (
        services.receiver_process(settings, tmp_path / "receiver.log") as receiver,
        services.worker_process(settings, tmp_path / "worker.log", concurrency=1),
    ):
        resent = post_events(receiver, events)  # Mandrill's resend of the refused batch
        assert resent.status_code == 200, resent.text
        accepted_id = resent.json()["delivery_id"]
        wait_for_deliveries(engine, [accepted_id])
        reconciled = kave(["reconcile", "--older-than", "60"], child_env(settings))
        assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
        assert refused_id in reconciled.stdout
        wait_for_deliveries(engine, [refused_id])
    with Session(engine) as session:
        stored = session.scalar(
            select(func.count()).select_from(Email).where(Email.message_id == message_id)
        )
        outcomes = sorted(
            session.scalars(
                select(DeliveryEvent.outcome).where(
                    DeliveryEvent.delivery_id.in_([refused_id, accepted_id])
                )
            )
        )
    assert stored == 1
    assert outcomes == ["duplicate", "stored"]
