"""Dead letters, replay, reprocess and reconciliation, through real processes."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from shared.accepted import AcceptedLedger, accepted_entry
from shared.contract import Envelope, archive_object_key
from shared.models import DeadLetter, Delivery, DeliveryEvent, Email
from shared.objectstore import S3ObjectStore, make_s3_client
from shared.settings import Settings
from tests import services
from tests.kave.support import kave_with_settings as kave
from tests.services import derive_settings, wait_until
from tests.webhooks import fixture_events, post_events, signed_form, wait_for_deliveries
from worker.losses import LossTracker

pytestmark = pytest.mark.usefixtures("clean_db")


def dead_letters(engine: Engine) -> list[DeadLetter]:
    with Session(engine) as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


@pytest.mark.usefixtures("worker")
def test_poison_event_is_a_dead_letter_after_one_attempt(
    receiver: str, engine: Engine, base_settings: Settings
) -> None:
    batch = [
        *json.loads(fixture_events("inbound_without_msg.json")),
        *json.loads(fixture_events("open.json")),
    ]
    response = post_events(receiver, json.dumps(batch))
    delivery_id = response.json()["delivery_id"]
    wait_for_deliveries(engine, [delivery_id])

    (letter,) = dead_letters(engine)
    assert (letter.delivery_id, letter.event_index, letter.kind) == (delivery_id, 0, "inbound")
    assert letter.error_class == "invalid_event"
    assert letter.attempts == 1
    assert letter.status == "open"
    assert "msg" in letter.message
    assert letter.traceback is not None
    assert "parse_inbound" in letter.traceback

    listed = kave(["dead-letters"], base_settings)
    assert listed.returncode == 0
    assert str(letter.id) in listed.stdout
    assert "invalid_event" in listed.stdout

    # Replaying an input that is still bad fails again and counts the attempt.
    replayed = kave(["replay", str(letter.id)], base_settings)
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    (again,) = dead_letters(engine)
    assert (again.attempts, again.status) == (2, "open")

    discarded = kave(["discard", str(letter.id)], base_settings)
    assert "discarded 1 of 1" in discarded.stdout
    assert dead_letters(engine)[0].status == "discarded"
    assert "not_open" in kave(["replay", str(letter.id)], base_settings).stdout


@pytest.fixture
def worker_on_missing_bucket(
    base_settings: Settings, tmp_path: Path
) -> Iterator[tuple[Settings, Path]]:
    """A worker whose bucket does not exist yet: a configuration fault an operator fixes."""
    settings = derive_settings(
        base_settings,
        s3_bucket=f"kave-missing-{uuid.uuid4().hex[:8]}",
        queue_name=f"kave-bucket-{uuid.uuid4().hex[:8]}",
        unknown_error_retries=1,
        retry_backoff_max_seconds=1,
    )
    log_path = tmp_path / "worker.log"
    with services.worker_process(settings, log_path, concurrency=1):
        yield settings, log_path


def test_fixed_dead_letter_replays_into_one_email(
    worker_on_missing_bucket: tuple[Settings, Path], engine: Engine
) -> None:
    from fastapi.testclient import TestClient

    from receiver.app import create_app

    settings, _ = worker_on_missing_bucket
    body, headers = signed_form(fixture_events("inbound_with_image.json"))
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/v1/webhooks/mailchimp", content=body, headers=headers)
    assert response.status_code == 200
    delivery_id = response.json()["delivery_id"]
    wait_until(lambda: len(dead_letters(engine)) == 1, 60, "the dead letter")
    (letter,) = dead_letters(engine)
    assert letter.event_index is None
    assert letter.error_class.startswith("unknown:")
    # The retry policy's verdict (worker.errors.decide), not a generic line.
    assert letter.message.startswith(f"unexpected {letter.error_class[8:]} on 2 attempts")
    assert letter.attempts == 1

    # The operator creates the bucket, then replays.
    make_s3_client(settings).create_bucket(Bucket=settings.s3_bucket or "")
    replayed = kave(["replay", "--all", "--delivery", delivery_id], settings)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert kave(["replay", str(letter.id)], settings).stdout.count("not_open") >= 1

    with Session(engine) as session:
        emails = session.scalars(select(Email)).all()
        assert len(emails) == 1
        object_keys = [a.object_key for a in emails[0].attachments]
        status = session.scalar(select(Delivery.status).where(Delivery.id == delivery_id))
        outcomes = session.scalars(select(DeliveryEvent.outcome)).all()
    assert len(object_keys) == 1
    assert status == "processed"
    assert outcomes == ["stored"]
    assert dead_letters(engine)[0].status == "replayed"
    store = S3ObjectStore(make_s3_client(settings), settings.s3_bucket or "")
    assert store.exists(object_keys[0])


@pytest.mark.usefixtures("worker")
def test_reprocess_dry_run_on_unchanged_code_reports_no_changes(
    receiver: str, engine: Engine, base_settings: Settings
) -> None:
    names = ["inbound_reply.json", "inbound_with_multiple_images.json", "click.json"]
    ids = [post_events(receiver, fixture_events(name)).json()["delivery_id"] for name in names]
    wait_for_deliveries(engine, ids)
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

    unchanged = kave(["reprocess", "--since", since, "--dry-run"], base_settings)
    assert unchanged.returncode == 0, unchanged.stderr
    assert "no changes (3 deliveries checked)" in unchanged.stdout

    # What an older parser would have stored: a wrong subject and no attachments.
    with engine.begin() as conn:
        conn.execute(update(Email).where(Email.delivery_id == ids[1]).values(subject="old"))
    dry = kave(["reprocess", "--delivery", ids[1], "--dry-run"], base_settings)
    assert "update email" in dry.stdout
    assert "subject" in dry.stdout
    with Session(engine) as session:
        assert session.scalar(select(Email.subject).where(Email.delivery_id == ids[1])) == "old"

    applied = kave(["reprocess", "--delivery", ids[1]], base_settings)
    assert "changed 1 rows" in applied.stdout
    with Session(engine) as session:
        subject = session.scalar(select(Email.subject).where(Email.delivery_id == ids[1]))
        email_count = session.scalar(select(func.count()).select_from(Email))
    assert subject != "old"
    assert email_count == 3 - 1  # click.json is a tracking event
    assert "no changes" in kave(["reprocess", "--since", since, "--dry-run"], base_settings).stdout


@pytest.fixture
def empty_ledger(base_settings: Settings, redis_client: redis.Redis) -> None:
    """No entries of accepted deliveries on the session's queue but this test's: an
    earlier test's delivery that ended without its worker deleting the entry (a dead
    letter) would be looked at, and counted, by reconciliation."""
    prefix = AcceptedLedger(base_settings.queue_name).prefix
    for key in list(redis_client.scan_iter(match=prefix + "*")):
        redis_client.delete(key)


@pytest.mark.usefixtures("worker", "empty_ledger")
def test_reconcile_requeues_a_delivery_whose_task_was_lost(
    engine: Engine, base_settings: Settings, object_store: S3ObjectStore
) -> None:
    """A delivery recorded by a worker whose task message then vanished."""
    body, _ = signed_form(fixture_events("inbound_reply.json"))
    sha = hashlib.sha256(body).hexdigest()
    object_store.put(archive_object_key(sha), body)
    delivery_id = str(uuid.uuid4())
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    with engine.begin() as conn:
        conn.execute(
            Delivery.__table__.insert().values(
                id=delivery_id,
                received_at=long_ago,
                request_id="lost-task",
                body_sha256=sha,
                body_size=len(body),
                archive_key=archive_object_key(sha),
                status="received",
                attempts=1,
                last_attempt_at=long_ago,
            )
        )
    result = kave(["reconcile", "--older-than", "60"], base_settings)
    assert result.returncode == 0, result.stderr
    assert delivery_id in result.stdout
    wait_for_deliveries(engine, [delivery_id])
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Email)) == 1
    # A fresh delivery is left alone.
    assert "queued again 0" in kave(["reconcile", "--older-than", "60"], base_settings).stdout


def test_reconcile_requeues_an_accepted_delivery_whose_task_was_lost_before_any_attempt(
    engine: Engine,
    base_settings: Settings,
    service_dir: Path,
    redis_client: redis.Redis,
) -> None:
    """The task message gone before any worker recorded the delivery, as when a worker
    is killed between popping it and recording it unacknowledged: no row, only the
    receiver's entry in the ledger of accepted deliveries. On a queue of its own, which
    no worker consumes until the message is gone."""
    settings = derive_settings(base_settings, queue_name=f"kave-lost-{uuid.uuid4().hex[:8]}")
    entry = AcceptedLedger(settings.queue_name)
    with services.receiver_process(settings, service_dir / "lost-receiver.log") as url:
        response = post_events(url, fixture_events("inbound_reply.json"))
        assert response.status_code == 200, response.text
        delivery_id = response.json()["delivery_id"]
        assert redis_client.delete(settings.queue_name) == 1  # the message, and only it, is lost
        assert redis_client.exists(entry.key(delivery_id)) == 1
        time.sleep(0.1)
        # A later delivery still waits in the queue: the lost one was queued before it,
        # so it cannot be waiting, and it is queued again all the same.
        later = post_events(url, fixture_events("inbound.json"))
    assert later.status_code == 200, later.text
    later_id = later.json()["delivery_id"]
    time.sleep(1.1)  # both older than --older-than 1

    result = kave(["reconcile", "--older-than", "1"], settings)

    assert result.returncode == 0, result.stderr
    assert "queued again 1 " in result.stdout
    assert delivery_id in result.stdout
    assert later_id not in result.stdout
    with services.worker_process(settings, service_dir / "lost-worker.log"):
        wait_for_deliveries(engine, [delivery_id, later_id])
        wait_until(
            lambda: not redis_client.exists(entry.key(delivery_id)),
            10,
            "the ledger entry removed by the worker",
        )
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Email)) == 2
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
    assert "queued again 0 " in kave(["reconcile", "--older-than", "1"], settings).stdout


def test_reconcile_leaves_accepted_deliveries_still_waiting_in_the_queue(
    base_settings: Settings, service_dir: Path, redis_client: redis.Redis
) -> None:
    """A backlog older than the reconcile age (no worker consumes this queue): every
    delivery in it is still waiting, so none is queued again on top of the line."""
    settings = derive_settings(base_settings, queue_name=f"kave-wait-{uuid.uuid4().hex[:8]}")
    with services.receiver_process(settings, service_dir / "waiting-receiver.log") as url:
        for name in ("inbound.json", "inbound_reply.json", "inbound.json"):
            assert post_events(url, fixture_events(name)).status_code == 200
    assert redis_client.llen(settings.queue_name) == 3
    time.sleep(1.1)  # older than --older-than 1

    result = kave(["reconcile", "--older-than", "1"], settings)

    assert result.returncode == 0, result.stderr
    assert "queued again 0 " in result.stdout
    assert redis_client.llen(settings.queue_name) == 3
    redis_client.delete(settings.queue_name)


@pytest.mark.usefixtures("empty_ledger")
def test_reconcile_drops_an_entry_whose_body_was_never_stored(
    engine: Engine, base_settings: Settings, redis_client: redis.Redis
) -> None:
    """A batch answered 503 whose entry outlived its body: nothing to process, and no
    dead letter for a batch Mandrill sends again."""
    envelope = Envelope(
        delivery_id=str(uuid.uuid4()),
        received_at=datetime.now(UTC).isoformat(),
        body_sha256="0" * 64,
        body_size=10,
        payload_store="redis",
        payload_key=f"kave:payload:{uuid.uuid4()}",
        request_id="test",
    )
    key = AcceptedLedger(base_settings.queue_name).key(envelope.delivery_id)
    redis_client.set(key, accepted_entry(envelope, time.time() - 3600))

    result = kave(["reconcile", "--older-than", "60"], base_settings)

    assert result.returncode == 0, result.stderr
    assert "queued again 0 " in result.stdout
    assert redis_client.exists(key) == 0
    with Session(engine) as session:
        assert session.get(Delivery, envelope.delivery_id) is None
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0


def test_loss_tracker_counts_deaths_per_stage(redis_client: redis.Redis) -> None:
    delivery_id = str(uuid.uuid4())
    tracker = LossTracker(redis_client, delivery_id)
    assert tracker.begin("body") is None
    tracker.enter(4)  # ... and the process dies here
    assert tracker.begin("body") == ("4", 1)
    tracker.enter(4)
    assert tracker.begin("body") == ("4", 2)
    tracker.enter(5)
    tracker.leave()  # ended normally: nothing to count
    assert tracker.begin("body") is None  # ... and dies in the body stage
    assert tracker.begin("body") == ("body", 1)
    body_copy = f"test:body:{delivery_id}"
    redis_client.set(body_copy, b"x")
    tracker.leave_deleting(body_copy)  # ended normally, and its body copy goes too
    assert redis_client.exists(body_copy) == 0
    assert tracker.begin("body") is None


def test_loss_tracker_reads_a_key_with_the_marker_and_counts_deaths_the_same(
    redis_client: redis.Redis,
) -> None:
    delivery_id = str(uuid.uuid4())
    tracker = LossTracker(redis_client, delivery_id)
    body_copy = f"test:body:{delivery_id}"
    redis_client.set(body_copy, b"the body")
    assert tracker.begin_reading("body", body_copy) == (None, b"the body")
    tracker.enter(0)  # ... and the process dies here
    assert tracker.begin_reading("body", body_copy) == (("0", 1), b"the body")
    # ... and dies in the body stage; the copy is gone meanwhile (archived, say)
    redis_client.delete(body_copy)
    assert tracker.begin_reading("body", body_copy) == (("body", 1), None)
    assert redis_client.get(tracker.marker_key) == b"body"


def test_envelope_round_trip_rejects_unknown_versions() -> None:
    envelope = Envelope(
        delivery_id="d",
        received_at=datetime.now(UTC).isoformat(),
        body_sha256="0" * 64,
        body_size=1,
        payload_store="redis",
        payload_key="k",
        request_id="r",
    )
    assert Envelope.from_message(envelope.to_message()) == envelope
    with pytest.raises(ValueError, match="version"):
        Envelope.from_message({**envelope.to_message(), "version": 99})


def test_an_event_that_killed_its_worker_too_often_is_dead_lettered_alone(
    base_settings: Settings, engine: Engine, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Three earlier attempts died at event 0, before committing anything: the next one
    dead-letters that event (creating the delivery row) and stores the rest."""
    from fastapi.testclient import TestClient

    from receiver.app import create_app

    settings = derive_settings(base_settings, queue_name=f"kave-lost-{uuid.uuid4().hex[:8]}")
    batch = [
        *json.loads(fixture_events("inbound.json")),
        *json.loads(fixture_events("open.json")),
    ]
    body, headers = signed_form(json.dumps(batch))
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/v1/webhooks/mailchimp", content=body, headers=headers)
    delivery_id = response.json()["delivery_id"]
    # What three deaths at event 0 leave behind (see worker.losses).
    redis_client.set(f"kave:inflight:{delivery_id}", "0")
    redis_client.set(f"kave:losses:{delivery_id}:0", settings.max_worker_losses - 1)

    with services.worker_process(settings, tmp_path / "worker.log", concurrency=1):
        wait_for_deliveries(engine, [delivery_id])

    (letter,) = dead_letters(engine)
    assert (letter.event_index, letter.error_class, letter.kind) == (0, "worker_lost", "inbound")
    with Session(engine) as session:
        outcomes = session.execute(
            select(DeliveryEvent.index, DeliveryEvent.outcome).order_by(DeliveryEvent.index)
        ).all()
    assert [tuple(o) for o in outcomes] == [(0, "failed"), (1, "stored")]
