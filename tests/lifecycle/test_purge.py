"""``kave purge``: the policy per kind, a purge SIGKILLed at random points and rerun,
and the beat task, all on real rows and objects from the pipeline."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from shared.contract import PURGE_TASK
from shared.db import make_session_factory
from shared.lifecycle.purge import purge
from shared.models import Attachment, Delivery, Email, Event
from shared.objectstore import S3ObjectStore
from shared.queue import celery_config
from shared.settings import Settings
from tests.kave.support import KAVE
from tests.kave.support import kave_with_settings as kave
from tests.lifecycle.conftest import deliver
from tests.lifecycle.test_audit import counts
from tests.lifecycle.test_erase import message
from tests.services import FIXTURES, REPO, child_env, derive_settings, wait_until

pytestmark = pytest.mark.usefixtures("worker", "clean")


def age(engine: Engine, delivery_id: str, days: float) -> None:
    """Make a delivery and what it brought look ``days`` old."""
    when = datetime.now(UTC) - timedelta(days=days)
    with Session(engine) as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(received_at=when, created_at=when)
        )
        session.execute(
            update(Email).where(Email.delivery_id == delivery_id).values(received_at=when)
        )
        session.execute(
            update(Event).where(Event.delivery_id == delivery_id).values(created_at=when)
        )


def tracking_event(recipient: str) -> str:
    events = json.loads((FIXTURES / "open.json").read_text(encoding="utf-8"))
    events[0]["msg"]["email"] = recipient
    return json.dumps(events)


def policy(settings: Settings, **changes: object) -> Settings:
    return derive_settings(
        settings,
        retention_emails_days=5,
        retention_events_days=5,
        retention_deliveries_days=5,
        retention_dead_letters_days=5,
        retention_raw_messages_days=3,
        retention_attachments_days=3,
        retention_archive_days=3,
        **changes,
    )


def test_purge_follows_the_policy_per_kind(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    shared = os.urandom(1024)
    old = deliver(receiver, engine, message("old@x.example", "in@k.example", attachment=shared))
    old_event = deliver(receiver, engine, tracking_event("old@x.example"))
    mid = deliver(receiver, engine, message("mid@x.example", "in@k.example", attachment=shared))
    new = deliver(receiver, engine, message("new@x.example", "in@k.example", attachment=shared))
    age(engine, old, 10)
    age(engine, old_event, 10)
    age(engine, mid, 4)
    with Session(engine) as session:
        before = {e.from_address: e for e in session.scalars(select(Email))}
        archives = {d.id: d.archive_key for d in session.scalars(select(Delivery))}
        shared_key = session.scalars(select(Attachment.object_key)).first()
    assert shared_key is not None

    dry = kave(["purge", "--dry-run"], policy(settings))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert (
        "would remove (each kind as things stand now): dead_letters 0, events 1, emails 1, "
        "raw_messages 2, attachments 2, archive 3, deliveries 0"
    ) in dry.stdout
    with Session(engine) as session:
        assert len(session.scalars(select(Email)).all()) == 3  # nothing removed

    result = kave(["purge"], policy(settings))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "retention: dead_letters 5 d" in result.stdout
    assert "emails: 1 rows deleted" in result.stdout
    assert "events: 1 rows deleted" in result.stdout
    assert "deliveries: 2 rows deleted" in result.stdout

    with Session(engine) as session:
        after = {e.from_address: e for e in session.scalars(select(Email))}
        assert session.scalars(select(Event)).all() == []
        kept = {d.id: d for d in session.scalars(select(Delivery))}
        mid_attachments = session.scalars(
            select(Attachment).where(Attachment.email_id == after["mid@x.example"].id)
        ).all()
    assert set(after) == {"mid@x.example", "new@x.example"}
    assert set(kept) == {mid, new}
    assert after["mid@x.example"].raw_removed_at is not None
    assert all(a.content_removed_at is not None for a in mid_attachments)
    assert kept[mid].archive_removed_reason == "retention"
    assert kept[new].archive_removed_at is None
    assert after["new@x.example"].raw_removed_at is None
    assert not clean_store.exists(before["old@x.example"].raw_key)
    assert not clean_store.exists(before["mid@x.example"].raw_key)
    assert not clean_store.exists(archives[old])
    assert not clean_store.exists(archives[mid])
    assert clean_store.exists(before["new@x.example"].raw_key)
    assert clean_store.exists(archives[new])
    assert clean_store.exists(shared_key)  # the new email still names it
    audit = kave(["audit"], settings)
    assert audit.returncode == 0, audit.stdout


def test_purge_killed_at_random_points_then_rerun_leaves_audit_clean(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    shared = os.urandom(512)
    for n in range(6):
        attachment = shared if n % 2 else os.urandom(256)
        delivery_id = deliver(
            receiver, engine, message(f"s{n}@x.example", "in@k.example", attachment=attachment)
        )
        age(engine, delivery_id, 10 if n < 4 else 4)
    for n in range(2):
        age(engine, deliver(receiver, engine, tracking_event(f"t{n}@x.example")), 10)
    deliver(receiver, engine, message("new@x.example", "in@k.example", attachment=shared))
    env = child_env(policy(settings, purge_batch_size=1))
    rng = random.Random(uuid.uuid4().int)

    kills = 0
    # Six kills at random points are enough to land in each step of a batch; the rerun
    # below finishes what they left (each kill costs two process starts, ~3 s).
    for _ in range(6):
        process = subprocess.Popen(
            [*KAVE, "purge"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert process.stdout is not None
        wanted = rng.randint(1, 4)  # progress lines before the kill
        seen = 0
        while seen < wanted:
            line = process.stdout.readline()
            if not line:
                break
            if line.startswith("  "):
                seen += 1
        if seen < wanted:  # it finished first
            assert process.wait(timeout=60) == 0
            break
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()
        kills += 1
        # Killed anywhere, no row names a missing object; only objects whose rows are
        # gone may be left, queued for the rerun.
        found = counts(kave(["audit"], settings).stdout)
        missing = {k: v for k, v in found.items() if k != "unreferenced_objects" and v}
        assert missing == {}, f"after kill {kills}"
    assert kills >= 3

    rerun = kave(["purge"], policy(settings, purge_batch_size=1))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    audit = kave(["audit"], settings)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    with Session(engine) as session:
        left = sorted(e.from_address or "" for e in session.scalars(select(Email)))
    assert left == ["new@x.example", "s4@x.example", "s5@x.example"]


def test_beat_task_purges_by_the_workers_policy(
    receiver: str, engine: Engine, base_settings: Settings
) -> None:
    # The session worker keeps archives the default 30 days.
    assert base_settings.retention_archive_days == 30
    delivery_id = deliver(receiver, engine, message("beat@x.example", "in@k.example"))
    age(engine, delivery_id, 40)
    producer = Celery("kave-test")
    producer.conf.update(celery_config(base_settings))
    producer.send_task(PURGE_TASK)

    def purged() -> bool:
        with Session(engine) as session:
            delivery = session.get(Delivery, delivery_id)
            return delivery is not None and delivery.archive_removed_reason == "retention"

    wait_until(purged, 60, "the beat task's purge")
    producer.close()


def test_reprocess_after_retention_names_what_it_cannot_reprocess(
    receiver: str, engine: Engine, settings: Settings
) -> None:
    purged = deliver(receiver, engine, message("gone@x.example", "in@k.example"))
    kept = deliver(receiver, engine, message("kept@x.example", "in@k.example"))
    age(engine, purged, 4)
    assert kave(["purge"], policy(settings)).returncode == 0

    since = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    result = kave(["reprocess", "--since", since], settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{purged}: not reprocessable: its archive was removed by retention" in result.stdout
    assert "1 deliveries can no longer be reprocessed" in result.stdout
    assert kept not in result.stdout  # reprocessed, unchanged
    assert "no changes (1 deliveries checked)" in result.stdout

    one = kave(["reprocess", "--delivery", purged], settings)
    assert one.returncode == 0, one.stdout + one.stderr
    assert "not reprocessable" in one.stdout


def test_a_spent_time_budget_stops_between_batches(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    delivery_id = deliver(receiver, engine, message("late@x.example", "in@k.example"))
    age(engine, delivery_id, 10)
    sessions = make_session_factory(engine)
    stopped = purge(sessions, clean_store, policy(settings), stop_after_seconds=0)
    assert not stopped.finished
    assert sum(stopped.counts.values()) == 0
    done = purge(sessions, clean_store, policy(settings), stop_after_seconds=60)
    assert done.finished
    assert done.counts["emails"] == 1
