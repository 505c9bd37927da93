"""``kave audit`` against a real pipeline's rows and objects (S3 server, PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from kave.audit import run_audit
from shared.db import make_session_factory
from shared.models import Attachment, Delivery, DeliveryEvent
from shared.objectstore import LocalObjectStore, S3ObjectStore
from shared.settings import Settings
from tests.kave.support import kave_with_settings as kave
from tests.lifecycle.conftest import deliver
from tests.webhooks import fixture_events

pytestmark = pytest.mark.usefixtures("worker", "clean")


def counts(output: str) -> dict[str, int]:
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit() and parts[0].islower() and "_" in parts[0]:
            found[parts[0]] = int(parts[1])
    return found


def test_a_pipeline_run_audits_clean(receiver: str, engine: Engine, settings: Settings) -> None:
    deliver(receiver, engine, fixture_events("inbound_with_multiple_attachments.json"))
    deliver(receiver, engine, fixture_events("open.json"))
    result = kave(["audit"], settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit clean" in result.stdout
    assert all(count == 0 for count in counts(result.stdout).values())
    assert len(counts(result.stdout)) == 7  # audit.KINDS


def test_unreferenced_object_is_found_and_repaired(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    deliver(receiver, engine, fixture_events("inbound_with_txt_attachment.json"))
    orphan = f"attachments/00/{uuid.uuid4().hex}"
    clean_store.put(orphan, b"nobody names me")

    # Young objects may be about to be named: not an inconsistency within the grace.
    assert kave(["audit", "--grace", "3600"], settings).returncode == 0

    found = kave(["audit"], settings)
    assert found.returncode == 1
    assert counts(found.stdout)["unreferenced_objects"] == 1
    assert orphan in found.stdout
    assert clean_store.exists(orphan)  # no --repair: nothing is touched

    repaired = kave(["audit", "--repair"], settings)
    assert repaired.returncode == 0, repaired.stdout
    assert "(repaired 1)" in repaired.stdout
    assert not clean_store.exists(orphan)
    assert kave(["audit"], settings).returncode == 0


def test_rows_whose_object_is_missing_are_reported_never_deleted(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    deliver(receiver, engine, fixture_events("inbound_with_txt_attachment.json"))
    with Session(engine) as session:
        key = session.scalars(select(Attachment.object_key)).one()
    clean_store.delete(key)
    for args in (["audit"], ["audit", "--repair"]):
        result = kave(args, settings)
        assert result.returncode == 1
        assert counts(result.stdout)["missing_attachments"] == 1
    with Session(engine) as session:
        assert session.scalars(select(Attachment.object_key)).one() == key


def test_unfinished_deliveries_and_missing_outcomes(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    delivery_id = deliver(receiver, engine, fixture_events("inbound.json"))
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    with Session(engine) as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status="received", last_attempt_at=long_ago, created_at=long_ago)
        )
    result = kave(["audit", "--grace", "3600"], settings)
    assert result.returncode == 1
    assert counts(result.stdout)["unfinished_deliveries"] == 1

    with Session(engine) as session, session.begin():
        session.execute(
            update(Delivery).where(Delivery.id == delivery_id).values(status="processed")
        )
        session.query(DeliveryEvent).delete()
    result = kave(["audit", "--grace", "3600"], settings)
    assert result.returncode == 1
    assert counts(result.stdout)["events_without_outcome"] == 1


def test_last_audit_is_a_prometheus_gauge(
    receiver: str, api: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    deliver(receiver, engine, fixture_events("inbound_with_txt_attachment.json"))
    with Session(engine) as session:
        key = session.scalars(select(Attachment.object_key)).one()
    clean_store.delete(key)
    assert kave(["audit"], settings).returncode == 1
    metrics = httpx.get(api + "/metrics", timeout=30).text
    assert 'kave_audit_inconsistencies{kind="missing_attachments"} 1.0' in metrics
    assert 'kave_audit_inconsistencies{kind="unreferenced_objects"} 0.0' in metrics
    assert "kave_audit_last_run_timestamp_seconds " in metrics


def test_the_local_directory_store_is_audited_too(
    engine: Engine, tmp_path: Path, settings: Settings
) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put("attachments/ab/orphan", b"x")
    store.put("deliveries/cd/also-orphan", b"y")
    (tmp_path / "objects" / "attachments" / "ab" / ".tmp-half-written").write_bytes(b"z")
    sessions = make_session_factory(engine)
    report = run_audit(sessions, store, grace_seconds=0)
    assert report.counts["unreferenced_objects"] == 2
    assert not report.clean
    repaired = run_audit(sessions, store, grace_seconds=0, repair=True)
    assert repaired.repaired == {"unreferenced_objects": 2}
    assert repaired.clean
    assert [o.key for o in store.list_objects()] == []


def test_a_ready_text_without_its_object_is_reported(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    deliver(receiver, engine, fixture_events("inbound_with_txt_attachment.json"))
    with Session(engine) as session, session.begin():
        session.execute(update(Attachment).values(text_status="ready"))
    result = kave(["audit"], settings)
    assert result.returncode == 1
    assert counts(result.stdout)["missing_texts"] == 1
