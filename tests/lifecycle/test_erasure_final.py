"""Erasure is immediate and final, through the real pipeline, CLI and API processes.

With the default grace (``KAVE_ORPHAN_GRACE_SECONDS``, a day), right after ``kave erase``
or ``DELETE /api/v1/emails/{id}`` returns: no object and no row anywhere holds the erased
address or text, nothing replays, retries, reprocesses or reconciles the erased delivery
back, and the audit is clean. Content another email still has stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
import redis
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from api.auth import hash_password
from shared.accepted import AcceptedLedger
from shared.contract import PROCESS_DELIVERY_TASK
from shared.db import make_session_factory
from shared.lifecycle.erase import ERASED_UNFINISHED, erase, erase_rows
from shared.lifecycle.objects import queue_deletions
from shared.models import (
    Attachment,
    DeadLetter,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Email,
    ObjectDeletion,
    User,
)
from shared.objectstore import S3ObjectStore
from shared.settings import Settings
from tests.api.conftest import PASSWORD, get_token
from tests.kave.support import kave_with_settings as kave
from tests.lifecycle.conftest import deliver
from tests.lifecycle.test_drain_race import _envelope as new_envelope
from tests.lifecycle.test_erase import message
from tests.services import wait_until
from tests.webhooks import fixture_events
from worker.celery_app import create_celery_app
from worker.ingest.commit import DeliveryWrites, commit_event, prepare_event
from worker.ingest.context import IngestContext, envelope_for
from worker.ingest.parsing import ParsedEmail
from worker.ingest.storage.deliveries import finish_delivery, record_delivery
from worker.tasks import REQUEUED_HEADER

pytestmark = pytest.mark.usefixtures("worker", "clean")


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """The session's settings as deployed: a day's grace for orphans."""
    assert base_settings.orphan_grace_seconds >= 3600
    return base_settings


def rows_holding(engine: Engine, needle: str) -> dict[str, int]:
    """Every row of every table of the schema (listed from the catalog, not assumed),
    as PostgreSQL's text form of the whole row, searched for the needle (any case; bytea
    columns appear in hex)."""
    forms = {needle.lower(), needle.encode().hex()}
    found: dict[str, int] = {}
    with engine.connect() as conn:
        tables = conn.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        ).all()
        assert {"emails", "deliveries", "dead_letters", "object_deletions"} <= set(tables)
        for table in tables:
            for form in forms:
                query = f'SELECT count(*) FROM "{table}" AS t WHERE strpos(lower(t::text), :f) > 0'  # noqa: S608 - names from the catalog
                count = conn.execute(text(query), {"f": form}).scalar_one()
                if count:
                    found[table] = found.get(table, 0) + count
    return found


def objects_holding(store: S3ObjectStore, needle: str) -> list[str]:
    """Every object of the bucket, read whole, searched for the needle as text, URL-
    encoded (the form-encoded archive) or JSON-escaped."""
    forms = {needle, quote_plus(needle), quote(needle), json.dumps(needle)[1:-1]}
    return [
        item.key
        for item in store.list_objects()
        if any(form.lower().encode() in store.get(item.key).lower() for form in forms)
    ]


def held_anywhere(engine: Engine, store: S3ObjectStore, *needles: str) -> list[str]:
    found = []
    for needle in needles:
        found += [f"row {table}" for table in rows_holding(engine, needle)]
        found += [f"object {key}" for key in objects_holding(store, needle)]
    return found


@pytest.fixture
def api_user(clean: Engine) -> tuple[str, str]:
    """An admin user of the API process: (name, password)."""
    name = f"admin-{uuid.uuid4().hex[:6]}"
    with Session(clean) as session, session.begin():
        session.add(User(name=name, password_hash=hash_password(PASSWORD, rounds=4), role="admin"))
    return name, PASSWORD


@contextmanager
def api_client(api: str, user: tuple[str, str]) -> Iterator[httpx.Client]:
    """A client of the API process, signed in as ``user``."""
    with httpx.Client(base_url=api, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {get_token(client, user[0], user[1])}"
        yield client


def broken_event(address: str, secret: str) -> dict[str, object]:
    """An inbound event no parser accepts: a dead letter whose content is only archived."""
    return {"event": "inbound", "ts": int(time.time()), "msg": {"email": address, "text": secret}}


def dead_letter_of(engine: Engine, delivery_id: str) -> DeadLetter:
    with Session(engine) as session:
        return session.scalars(
            select(DeadLetter).where(DeadLetter.delivery_id == delivery_id)
        ).one()


def attachment_key(content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()
    return f"attachments/{digest[:2]}/{digest}"


def test_erase_by_address_leaves_nothing_and_nothing_brings_it_back(
    receiver: str,
    api: str,
    api_user: tuple[str, str],
    *,
    engine: Engine,
    settings: Settings,
    clean_store: S3ObjectStore,
    worker: Path,
) -> None:
    address = f"erase-{uuid.uuid4().hex[:8]}@example.org"
    secret = f"secret-{uuid.uuid4().hex}"
    shared = os.urandom(1024)
    first = deliver(
        receiver,
        engine,
        message(address, "in@kave.example", attachment=shared, body=f"the code is {secret}"),
    )
    deliver(receiver, engine, message("keep@else.example", "in@kave.example", attachment=shared))
    opened = json.loads(fixture_events("open.json"))
    opened[0]["msg"]["email"] = address
    deliver(receiver, engine, json.dumps(opened))
    dead = deliver(receiver, engine, json.dumps([broken_event(address, secret)]))
    letter = dead_letter_of(engine, dead)
    with Session(engine) as session:
        first_archive = session.get(Delivery, first).archive_key  # type: ignore[union-attr]
    archived_body = clean_store.get(first_archive)
    before = held_anywhere(engine, clean_store, address, secret)
    assert any(f.startswith("row") for f in before)  # the scans see what is there
    assert any(f.startswith("object") for f in before)

    erased = kave(["erase", "--address", address], settings)
    assert erased.returncode == 0, erased.stdout + erased.stderr
    assert address not in erased.stdout + erased.stderr
    assert "kept for now" not in erased.stdout  # nothing waits for the grace

    assert held_anywhere(engine, clean_store, address, secret) == []
    assert clean_store.get(attachment_key(shared)) == shared  # the other email's
    with Session(engine) as session:
        (kept,) = session.scalars(select(Email)).all()
        assert kept.from_address == "keep@else.example"
        assert session.scalars(select(Attachment.object_key)).all() == [attachment_key(shared)]
        assert session.get(DeadLetter, letter.id).status == "discarded"  # type: ignore[union-attr]

    # Replays by CLI and by API are refused, and say why.
    replayed = kave(["replay", str(letter.id)], settings)
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert f"delivery {dead} was erased on request" in replayed.stderr
    assert "cannot be replayed" in replayed.stderr
    with api_client(api, api_user) as client:
        refused = client.post(f"/api/v1/dead-letters/{letter.id}/replay")
    assert refused.status_code == 409, refused.text
    assert refused.json()["status"] == "error"
    assert "was erased on request" in refused.json()["message"]
    reprocessed = kave(["reprocess", "--delivery", dead], settings)
    assert reprocessed.returncode == 1
    assert "cannot be reprocessed" in reprocessed.stderr

    # A worker that held the body while the erasure ran put the archive back; then its
    # delivery's retry comes: refused, and the archive goes again.
    clean_store.put(first_archive, archived_body)
    with Session(engine) as session:
        delivery = session.get(Delivery, first)
        assert delivery is not None
        envelope = envelope_for(delivery)
    create_celery_app(settings).send_task(
        PROCESS_DELIVERY_TASK, kwargs={"envelope": envelope.to_message()}, retries=1
    )
    wait_until(lambda: first in refused_lines(worker), 60, "the refused retry")
    # Reconciliation's queuing is a first attempt that says so in a header: refused too.
    create_celery_app(settings).send_task(
        PROCESS_DELIVERY_TASK,
        kwargs={"envelope": envelope.to_message()},
        headers={REQUEUED_HEADER: True},
    )
    wait_until(lambda: refused_lines(worker).count(first) >= 2, 60, "the refused re-queue")
    assert held_anywhere(engine, clean_store, address, secret) == []

    audit = kave(["audit", "--grace", "0"], settings)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert clean_store.get(attachment_key(shared)) == shared


def refused_lines(log: Path) -> str:
    return "\n".join(
        line for line in log.read_text(errors="replace").splitlines() if "refused_erased" in line
    )


def test_delete_through_the_api_is_as_final(
    receiver: str,
    api: str,
    api_user: tuple[str, str],
    *,
    engine: Engine,
    settings: Settings,
    clean_store: S3ObjectStore,
) -> None:
    address = f"api-{uuid.uuid4().hex[:8]}@example.org"
    secret = f"secret-{uuid.uuid4().hex}"
    shared = os.urandom(1024)
    email_event = json.loads(
        message(address, "in@kave.example", attachment=shared, body=f"code {secret}")
    )[0]
    # One batch: the email, and an event that becomes a dead letter (its content lives
    # only in the archive that the erasure removes whole).
    batch = deliver(receiver, engine, json.dumps([email_event, broken_event(address, secret)]))
    deliver(receiver, engine, message("other@else.example", "in@kave.example", attachment=shared))
    letter = dead_letter_of(engine, batch)
    with Session(engine) as session:
        email_id = session.scalars(select(Email.id).where(Email.delivery_id == batch)).one()
    assert held_anywhere(engine, clean_store, address, secret)

    with api_client(api, api_user) as client:
        response = client.delete(f"/api/v1/emails/{email_id}")
        assert response.status_code == 200, response.text
        assert response.json()["objects_deferred"] == 0
        assert response.json()["objects_still_referenced"] == 1  # the other email's
        assert held_anywhere(engine, clean_store, address, secret) == []
        refused = client.post(f"/api/v1/dead-letters/{letter.id}/replay")
    assert refused.status_code == 409, refused.text
    assert refused.json()["status"] == "error"
    assert "cannot be replayed" in refused.json()["message"]
    # The erasure discarded the delivery's dead letters: none is left open to replay...
    replayed = kave(["replay", "--all", "--delivery", batch], settings)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "replayed 0" in replayed.stdout
    # ...and naming one gets the reason.
    one = kave(["replay", str(letter.id)], settings)
    assert one.returncode == 1
    assert "was erased on request" in one.stderr
    assert held_anywhere(engine, clean_store, address, secret) == []
    assert clean_store.get(attachment_key(shared)) == shared
    audit = kave(["audit", "--grace", "0"], settings)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_worker_storing_the_same_attachment_meanwhile_keeps_it(
    receiver: str,
    engine: Engine,
    clean_store: S3ObjectStore,
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    content = os.urandom(2048)
    erased = deliver(
        receiver, engine, message("gone@x.example", "in@k.example", attachment=content)
    )
    ctx = IngestContext(
        session_factory=sessionmaker(engine),
        object_store=clean_store,
        redis=redis_client,
        ledger=AcceptedLedger("kave-test-erasure-final"),
    )
    event = json.loads(message("new@y.example", "in@k.example", attachment=content))[0]
    prepared = prepare_event(ctx, 0, event)  # parsed, its objects uploaded
    assert isinstance(prepared.parsed, ParsedEmail)
    with Session(engine) as session:
        email_id = session.scalars(select(Email.id).where(Email.delivery_id == erased)).one()

    # The erasure runs between the worker's uploads and its commit, with a day's grace.
    result = erase(
        make_session_factory(engine),
        clean_store,
        actor="test",
        grace_seconds=settings.orphan_grace_seconds,
        email_id=email_id,
    )
    assert result.objects.deferred == 0
    assert not clean_store.exists(attachment_key(content))  # no row named it any more

    envelope = new_envelope()
    outcome = commit_event(
        ctx, envelope.delivery_id, prepared, delivery=DeliveryWrites(envelope, record_attempt=True)
    )
    assert outcome == "stored"
    assert clean_store.get(attachment_key(content)) == content  # put back before the commit


def test_a_crashed_erasure_is_finished_by_the_next_purge_without_grace(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    address = f"crash-{uuid.uuid4().hex[:8]}@example.org"
    deliver(receiver, engine, message(address, "in@kave.example", attachment=os.urandom(256)))
    # The rows go and the objects are queued; then the process "dies".
    erase_rows(make_session_factory(engine), clean_store, actor="test", address=address)
    assert len(objects_holding(clean_store, address)) == 2  # raw message and archive

    purged = kave(["purge"], settings)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert objects_holding(clean_store, address) == []
    assert kave(["audit", "--grace", "0"], settings).returncode == 0


def test_reconcile_never_queues_an_erased_delivery(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    address = f"late-{uuid.uuid4().hex[:8]}@example.org"
    delivery_id = deliver(receiver, engine, message(address, "in@kave.example"))
    assert kave(["erase", "--address", address], settings).returncode == 0
    # As if the erasure had met it unfinished (in an older version), an hour ago.
    with Session(engine) as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(
                status=DeliveryStatus.RECEIVED,
                last_attempt_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )
    reconciled = kave(["reconcile", "--older-than", "60"], settings)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert "queued again 0" in reconciled.stdout
    # Not even looked at: no "unreadable" dead letter for a body it could not find.
    with Session(engine) as session:
        assert session.get(Delivery, delivery_id).status == DeliveryStatus.RECEIVED  # type: ignore[union-attr]
        assert session.scalars(select(DeadLetter)).all() == []


def test_an_erasures_queued_key_keeps_going_without_grace(clean: Engine) -> None:
    def flags() -> dict[str, bool]:
        with Session(clean) as session:
            rows = session.execute(select(ObjectDeletion.key, ObjectDeletion.without_grace))
            return dict(rows.all())

    with Session(clean) as session, session.begin():
        queue_deletions(session, ["erased", "drained"], without_grace=True)
        queue_deletions(session, ["purged"])
    # A purge queuing the same key meanwhile does not give it a grace again...
    with Session(clean) as session, session.begin():
        queue_deletions(session, ["erased", "purged"])
        session.execute(
            update(ObjectDeletion)
            .where(ObjectDeletion.key == "drained")
            .values(object_deleted_at=datetime.now(UTC))
        )
    assert flags() == {"erased": True, "drained": True, "purged": False}
    # ...but a tombstone queued again is a new entry, with the new queuer's grace.
    with Session(clean) as session, session.begin():
        queue_deletions(session, ["drained"])
        queue_deletions(session, ["purged"], without_grace=True)
    assert flags() == {"erased": True, "drained": False, "purged": True}


def test_an_unfinished_delivery_erased_leaves_a_dead_letter_for_its_other_events(
    receiver: str, engine: Engine, settings: Settings, clean_store: S3ObjectStore
) -> None:
    address = f"half-{uuid.uuid4().hex[:8]}@example.org"
    events = json.loads(message(address, "in@kave.example")) + json.loads(
        message("someone-else@example.org", "in@kave.example")
    )
    delivery_id = deliver(receiver, engine, json.dumps(events))
    # As if the worker had stored the first event and not yet the second when the
    # erasure came: the delivery unfinished, the other email without its outcome.
    with Session(engine) as session, session.begin():
        other = session.scalars(
            select(DeliveryEvent).where(
                DeliveryEvent.delivery_id == delivery_id, DeliveryEvent.index == 1
            )
        ).one()
        email_id = other.email_id
        session.delete(other)
        session.execute(delete(Email).where(Email.id == email_id))
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status=DeliveryStatus.RECEIVED, event_count=None, handled_at=None)
        )
    erased = kave(["erase", "--address", address], settings)
    assert erased.returncode == 0, erased.stdout + erased.stderr

    with Session(engine) as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        assert delivery.status == DeliveryStatus.FAILED
        (letter,) = session.scalars(
            select(DeadLetter).where(DeadLetter.delivery_id == delivery_id)
        ).all()
        # The other email's event has a result an operator sees, with no content in it.
        assert (letter.event_index, letter.kind, letter.status) == (
            None,
            "erased_unfinished",
            "open",
        )
        assert "someone-else" not in letter.message
        assert address not in letter.message
    replayed = kave(["replay", str(letter.id)], settings)
    assert replayed.returncode == 1
    assert "was erased on request" in replayed.stderr

    # A worker that was mid-batch when the erasure committed finishes its attempt: the
    # erasure's end stands, the delivery does not end a second time as processed.
    with Session(engine) as session, session.begin():
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        envelope = envelope_for(delivery)
        record_delivery(session, envelope, delivery.archive_key, finish_with_events=2)
        finish_delivery(session, delivery_id, event_count=2)
    with Session(engine) as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        assert (delivery.status, delivery.error) == (DeliveryStatus.FAILED, ERASED_UNFINISHED)
