"""A drain that removes content a worker is storing again at that moment, on the real
database and S3 server: the new email's rows never name a missing object."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime

import pytest
import redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from shared.accepted import AcceptedLedger
from shared.contract import Envelope, archive_object_key
from shared.lifecycle.objects import ArchiveRemovedMeanwhileError, drain, queue_deletions, reclaim
from shared.models import Delivery, Email, ObjectDeletion
from shared.objectstore import S3ObjectStore
from tests.webhooks import fixture_events
from worker.ingest.commit import DeliveryWrites, PreparedEvent, commit_event, prepare_event
from worker.ingest.context import IngestContext
from worker.ingest.parsing import ParsedEmail
from worker.ingest.storage.objects import email_objects


def _context(engine: Engine, store: S3ObjectStore, redis_client: redis.Redis) -> IngestContext:
    return IngestContext(
        session_factory=sessionmaker(engine),
        object_store=store,
        redis=redis_client,
        ledger=AcceptedLedger("kave-test-drain-race"),
    )


def _envelope() -> Envelope:
    body = uuid.uuid4().bytes
    return Envelope(
        delivery_id=str(uuid.uuid4()),
        received_at=datetime.now(UTC).isoformat(),
        body_sha256=hashlib.sha256(body).hexdigest(),
        body_size=len(body),
        payload_store="redis",
        payload_key=f"test:{uuid.uuid4()}",
        request_id="test",
    )


def _prepared_email(ctx: IngestContext) -> tuple[PreparedEvent, set[str]]:
    """An email parsed and its objects uploaded, not yet committed; its object keys."""
    event = json.loads(fixture_events("inbound_with_multiple_attachments.json"))[0]
    prepared = prepare_event(ctx, 0, event)  # parses and uploads its objects
    assert isinstance(prepared.parsed, ParsedEmail)
    return prepared, set(email_objects(prepared.parsed))


def test_objects_removed_between_upload_and_commit_are_put_back(
    clean: Engine, clean_store: S3ObjectStore, redis_client: redis.Redis
) -> None:
    ctx = _context(clean, clean_store, redis_client)
    prepared, keys = _prepared_email(ctx)
    assert len(keys) == 3  # the raw message and two attachments
    # An erasure of an earlier copy of the same email committed and queued the same
    # content-addressed keys; its drain runs after this worker's uploads.
    with Session(clean) as session, session.begin():
        queue_deletions(session, keys)
    drained = drain(sessionmaker(clean), clean_store, grace_seconds=0)
    assert drained.deleted == 3
    assert not any(clean_store.exists(key) for key in keys)

    envelope = _envelope()
    outcome = commit_event(
        ctx, envelope.delivery_id, prepared, delivery=DeliveryWrites(envelope, record_attempt=True)
    )

    assert outcome == "stored"
    assert all(clean_store.exists(key) for key in keys)
    with Session(clean) as session:
        assert not session.scalars(select(ObjectDeletion.key)).all()


def test_a_drain_skips_keys_a_committing_worker_holds(
    clean: Engine, clean_store: S3ObjectStore, redis_client: redis.Redis
) -> None:
    ctx = _context(clean, clean_store, redis_client)
    _, keys = _prepared_email(ctx)
    with Session(clean) as session, session.begin():
        queue_deletions(session, keys)

    with Session(clean) as worker_session, worker_session.begin():
        # The worker's commit has reached its objects' entries (and holds them)...
        assert reclaim(worker_session, keys) == []
        # ...so a drain meanwhile leaves them alone.
        drained = drain(sessionmaker(clean), clean_store, grace_seconds=0)
        assert drained.deleted == 0
    assert all(clean_store.exists(key) for key in keys)


def test_an_archive_removed_before_its_delivery_row_commits_is_retried(
    clean: Engine, clean_store: S3ObjectStore, redis_client: redis.Redis
) -> None:
    envelope = _envelope()
    key = archive_object_key(envelope.body_sha256)
    clean_store.put(key, b"mandrill_events=%5B%5D")  # archive_body's upload
    with Session(clean) as session, session.begin():
        queue_deletions(session, [key])  # an older delivery with the same body was purged
    assert drain(sessionmaker(clean), clean_store, grace_seconds=0).deleted == 1

    ctx = _context(clean, clean_store, redis_client)
    event = json.loads(fixture_events("click.json"))[0]
    prepared = prepare_event(ctx, 0, event)
    with pytest.raises(ArchiveRemovedMeanwhileError):
        commit_event(
            ctx,
            envelope.delivery_id,
            prepared,
            delivery=DeliveryWrites(envelope, record_attempt=True),
        )
    with Session(clean) as session:  # the attempt was rolled back, to be retried
        assert session.get(Delivery, envelope.delivery_id) is None


def test_an_archive_removed_before_an_emails_delivery_row_commits_is_retried(
    clean: Engine, clean_store: S3ObjectStore, redis_client: redis.Redis
) -> None:
    # As above, for an email: its delivery row is written by the statement of its rows.
    envelope = _envelope()
    key = archive_object_key(envelope.body_sha256)
    clean_store.put(key, b"mandrill_events=%5B%5D")
    with Session(clean) as session, session.begin():
        queue_deletions(session, [key])
    assert drain(sessionmaker(clean), clean_store, grace_seconds=0).deleted == 1

    ctx = _context(clean, clean_store, redis_client)
    prepared, _ = _prepared_email(ctx)
    with pytest.raises(ArchiveRemovedMeanwhileError):
        commit_event(
            ctx,
            envelope.delivery_id,
            prepared,
            delivery=DeliveryWrites(envelope, record_attempt=True, finish_with_events=1),
        )
    with Session(clean) as session:  # nothing of the attempt committed
        assert session.get(Delivery, envelope.delivery_id) is None
        assert session.scalars(select(Email)).all() == []
