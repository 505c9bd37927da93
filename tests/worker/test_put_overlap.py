"""Objects are put on the upload threads while the worker goes on, and what names them
waits: the body's archive is put while the first event is parsed and uploaded (every
write that names the archive, and the deletion of the Redis copy, waits for it); an
email's objects are put while its transaction's statements run, and it commits only
once they are stored.

On S3, where a worker process has upload threads. The S3 server sits behind
``loadkit.latency_proxy``, which holds the chosen requests (the archive's, the email's, or
all PUTs) before forwarding them, as a remote S3 is reached only a round trip later; it
records when each request was in flight. On the local store, which a subclass slows
before each put as a busy disk's fsync does, the puts are made in turn and the commit
waits for them all the same."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from botocore.exceptions import ClientError
from sqlalchemy import Connection, Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from loadkit import payloads
from loadkit.latency_proxy import DelayingProxy, ProxiedRequest
from shared.accepted import AcceptedLedger
from shared.contract import Envelope, archive_object_key, payload_redis_key
from shared.models import DeadLetter, Delivery, Email
from shared.objectstore import (
    LocalObjectStore,
    S3ObjectStore,
    make_s3_client,
)
from shared.settings import Settings
from tests.webhooks import received_in_redis
from worker.ingest.batch import process_delivery
from worker.ingest.context import DeliveryResult, IngestContext
from worker.losses import BODY_STAGE, LossTracker
from worker.resources import ingest_context, release

pytestmark = pytest.mark.usefixtures("clean_db")

ARCHIVE_PREFIX = "/deliveries/"


def archive_puts(method: str, path: str) -> bool:
    return method == "PUT" and ARCHIVE_PREFIX in path


def all_puts(method: str, path: str) -> bool:
    return method == "PUT"


EMAIL_OBJECT_PREFIXES = ("messages/", "attachments/")


def email_object_puts(method: str, path: str) -> bool:
    return method == "PUT" and any(f"/{prefix}" in path for prefix in EMAIL_OBJECT_PREFIXES)


@dataclass(frozen=True)
class Worker:
    """What an S3 worker's ingest runs on: the test's services and upload threads."""

    settings: Settings
    engine: Engine
    redis: redis.Redis
    uploads: ThreadPoolExecutor

    def context(self, store: S3ObjectStore) -> IngestContext:
        return IngestContext(
            session_factory=sessionmaker(self.engine),
            object_store=store,
            redis=self.redis,
            ledger=AcceptedLedger("kave-test-archive-overlap"),
            uploads=self.uploads,
        )

    def process_through_proxy(
        self, delay: float, delayed: Callable[[str, str], bool], envelope: Envelope
    ) -> tuple[DelayingProxy, DeliveryResult]:
        """Process the delivery with S3 behind a proxy holding ``delayed`` requests
        ``delay`` seconds, each request tried once."""
        assert self.settings.s3_endpoint_url is not None
        assert self.settings.s3_bucket is not None
        with DelayingProxy(self.settings.s3_endpoint_url, delay, delayed=delayed) as proxy:
            through = self.settings.model_copy(
                update={"s3_endpoint_url": proxy.url, "s3_max_attempts": 1}
            )
            store = S3ObjectStore(make_s3_client(through), self.settings.s3_bucket)
            result = process_delivery(self.context(store), envelope)
        return proxy, result


@pytest.fixture
def worker(
    base_settings: Settings,
    clean_db: Engine,
    redis_client: redis.Redis,
    uploads: ThreadPoolExecutor,
) -> Worker:
    return Worker(base_settings, clean_db, redis_client, uploads)


def one_email() -> str:
    return payloads.events_json([payloads.inbound_event(4096, seed=None)])


def the_put(proxy: DelayingProxy, fragment: str) -> ProxiedRequest:
    found = [r for r in proxy.requests if r.method == "PUT" and fragment in r.path]
    assert len(found) == 1, [r.path for r in proxy.requests]
    return found[0]


def raw_message_put(proxy: DelayingProxy) -> ProxiedRequest:
    return the_put(proxy, "/messages/")


def overlap(first: ProxiedRequest, second: ProxiedRequest) -> bool:
    return first.started < second.ended and second.started < first.ended


def archive_is_stored(store: S3ObjectStore, envelope: Envelope) -> bool:
    return store.exists(archive_object_key(envelope.body_sha256))


def assert_nothing_recorded_then_the_retry_stores_once(
    worker: Worker, store: S3ObjectStore, envelope: Envelope
) -> None:
    """After an attempt that a refused put ended: no row, the Redis copy kept and no
    death counted; then the retry, with S3 answering, stores the email once."""
    with Session(worker.engine) as session:
        assert session.get(Delivery, envelope.delivery_id) is None
        assert session.scalars(select(Email)).all() == []
    assert worker.redis.exists(payload_redis_key(envelope.delivery_id)) == 1
    assert worker.redis.exists(LossTracker(worker.redis, envelope.delivery_id).marker_key) == 0

    result = process_delivery(worker.context(store), envelope)

    assert result.outcomes == {"stored": 1}
    assert archive_is_stored(store, envelope)
    with Session(worker.engine) as session:
        email = session.scalars(select(Email)).one()
    assert store.get(email.raw_key)


@contextmanager
def email_transaction_timed() -> Iterator[dict[str, float]]:
    """While the block runs: when (``time.monotonic()``, the proxy's clock) an email's
    INSERT was sent, and when the transaction that sent it was about to commit (on any
    engine: the worker's resources make their own)."""
    seen: dict[str, float] = {}

    def sent(_conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        # The email's row goes in a statement of its own or in one with its other rows
        # (worker.ingest.storage.emails.store_email:
        # WITH new_email AS (INSERT INTO emails ...) ...).
        if "INSERT INTO emails " in statement:
            seen.setdefault("insert", time.monotonic())

    def committing(_conn: Connection) -> None:
        if "insert" in seen:
            seen.setdefault("commit", time.monotonic())

    event.listen(Engine, "before_cursor_execute", sent)
    event.listen(Engine, "commit", committing)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", sent)
        event.remove(Engine, "commit", committing)


@contextmanager
def rows_watched(
    engine: Engine, store: S3ObjectStore, envelope: Envelope
) -> Iterator[threading.Event]:
    """While the block runs, look every 10 ms for the delivery's row; the event is set if
    the row was ever committed while its archive was not in the store."""
    named_missing_archive, stop = threading.Event(), threading.Event()

    def watch() -> None:
        while not stop.wait(0.01):
            with Session(engine) as session:
                row = session.get(Delivery, envelope.delivery_id)
            if row is not None and not archive_is_stored(store, envelope):
                named_missing_archive.set()

    watcher = threading.Thread(target=watch, name="rows-watcher")
    watcher.start()
    try:
        yield named_missing_archive
    finally:
        stop.set()
        watcher.join()


def test_the_archive_is_put_while_the_first_email_is_uploaded(
    worker: Worker, object_store: S3ObjectStore
) -> None:
    envelope = received_in_redis(worker.redis, one_email())
    proxy, result = worker.process_through_proxy(0.3, all_puts, envelope)

    assert result.outcomes == {"stored": 1}
    assert overlap(the_put(proxy, ARCHIVE_PREFIX), raw_message_put(proxy))
    assert archive_is_stored(object_store, envelope)


def test_after_a_death_the_archive_is_put_before_the_first_event(
    worker: Worker, object_store: S3ObjectStore
) -> None:
    """A retry after a death does not overlap them, so the marker tells a death in the
    archive put (body stage) from one in the first event."""
    client = worker.redis
    envelope = received_in_redis(client, one_email())
    LossTracker(client, envelope.delivery_id).enter(BODY_STAGE)  # as a killed attempt left it

    proxy, result = worker.process_through_proxy(0.3, all_puts, envelope)

    assert result.outcomes == {"stored": 1}
    archive = the_put(proxy, ARCHIVE_PREFIX)
    assert archive.ended <= raw_message_put(proxy).started


def test_the_delivery_is_recorded_and_its_redis_copy_dropped_only_once_archived(
    worker: Worker, object_store: S3ObjectStore
) -> None:
    engine, client = worker.engine, worker.redis
    envelope = received_in_redis(client, one_email())

    # Only the archive is slow: the email is parsed and uploaded long before it is stored.
    with rows_watched(engine, object_store, envelope) as named_missing_archive:
        proxy, result = worker.process_through_proxy(1.0, archive_puts, envelope)

    assert not named_missing_archive.is_set()  # no moment with the row but no archive
    assert result.outcomes == {"stored": 1}
    assert archive_is_stored(object_store, envelope)  # as soon as the call returns
    assert client.exists(payload_redis_key(envelope.delivery_id)) == 0
    with Session(engine) as session:
        delivery = session.get(Delivery, envelope.delivery_id)
    assert delivery is not None
    assert delivery.archive_key == archive_object_key(envelope.body_sha256)
    assert overlap(the_put(proxy, ARCHIVE_PREFIX), raw_message_put(proxy))


def test_a_delivery_whose_events_were_all_done_is_finished_once_its_archive_is_stored(
    worker: Worker, object_store: S3ObjectStore
) -> None:
    """An attempt that finds every event done (a previous one stored them, then failed
    before the delivery's end and the copy's deletion) has nothing to overlap the put
    with: it waits for it before the delivery's rows."""
    envelope = received_in_redis(worker.redis, one_email())
    body = worker.redis.get(envelope.payload_key)
    worker.process_through_proxy(0.0, all_puts, envelope)
    # As that previous attempt left it: the events done, the Redis copy still there, and
    # (to see the order) the archive not stored yet.
    assert body is not None
    worker.redis.set(envelope.payload_key, body)
    object_store.delete(archive_object_key(envelope.body_sha256))

    proxy, result = worker.process_through_proxy(1.0, archive_puts, envelope)

    assert result.outcomes == {}  # nothing left to do but the delivery's own rows
    assert len([r for r in proxy.requests if r.method == "PUT"]) == 1
    assert archive_is_stored(object_store, envelope)
    assert worker.redis.exists(payload_redis_key(envelope.delivery_id)) == 0


def test_an_invalid_batch_is_dead_lettered_once_its_archive_is_stored(
    worker: Worker, object_store: S3ObjectStore
) -> None:
    engine, client = worker.engine, worker.redis
    envelope = received_in_redis(client, '{"not": "a list of events"}')

    worker.process_through_proxy(1.0, archive_puts, envelope)

    assert archive_is_stored(object_store, envelope)
    assert client.exists(payload_redis_key(envelope.delivery_id)) == 0
    with Session(engine) as session:
        letters = session.scalars(select(DeadLetter.error_class)).all()
    assert letters == ["invalid_batch"]


def test_a_failed_archive_put_records_nothing_and_the_retry_stores_the_email_once(
    worker: Worker, object_store: S3ObjectStore
) -> None:
    envelope = received_in_redis(worker.redis, one_email())

    # S3 refuses the archive's PUT (its bucket does not exist) after the email's objects
    # were uploaded: nothing may be recorded, the Redis copy stays, no death is counted.
    refusing = SomeKeysElsewhere(
        object_store, ARCHIVE_PREFIX.strip("/"), f"kave-missing-{uuid.uuid4().hex[:8]}"
    )
    with pytest.raises(ClientError):
        process_delivery(worker.context(refusing), envelope)

    assert refusing.other_puts > 0  # the email's objects
    assert_nothing_recorded_then_the_retry_stores_once(worker, object_store, envelope)


class SomeKeysElsewhere(S3ObjectStore):
    """The real S3 store, except that the keys under ``prefix`` go to ``bucket``."""

    def __init__(self, store: S3ObjectStore, prefix: str, bucket: str) -> None:
        super().__init__(store.client, store.bucket)
        self.prefix, self.elsewhere = prefix, bucket
        self.other_puts = 0

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        if key.startswith(self.prefix):
            S3ObjectStore(self.client, self.elsewhere).put(key, data, content_type)
            return
        self.other_puts += 1
        super().put(key, data, content_type)


class SlowDisk(LocalObjectStore):
    """The local store, waiting ``delay`` seconds before each put of an email's objects
    (as a busy disk's fsync would); it records when each of those puts was stored."""

    def __init__(self, root: Path, delay: float) -> None:
        super().__init__(root)
        self.delay = delay
        self.stored_at: dict[str, float] = {}

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        if key.startswith(EMAIL_OBJECT_PREFIXES):
            time.sleep(self.delay)
        super().put(key, data, content_type)
        self.stored_at[key] = time.monotonic()


def test_an_email_commits_once_its_objects_are_stored_which_were_put_during_its_statements(
    worker: Worker, object_store: S3ObjectStore
) -> None:
    envelope = received_in_redis(worker.redis, one_email())

    with email_transaction_timed() as seen:
        proxy, result = worker.process_through_proxy(0.5, email_object_puts, envelope)

    assert result.outcomes == {"stored": 1}
    email_puts = [the_put(proxy, "/messages/"), the_put(proxy, "/attachments/")]
    # The rows were sent while the puts were held, and committed only once both were
    # stored (a put's end is recorded before its answer leaves the proxy).
    assert all(seen["insert"] < put.ended for put in email_puts)
    assert all(seen["commit"] > put.ended for put in email_puts)
    with Session(worker.engine) as session:
        email = session.scalars(select(Email)).one()
    assert object_store.get(email.raw_key)


def test_a_failed_email_object_put_rolls_the_rows_back_and_the_retry_stores_the_email_once(
    worker: Worker, object_store: S3ObjectStore
) -> None:
    envelope = received_in_redis(worker.redis, one_email())

    # S3 refuses the raw message's PUT (its bucket does not exist) while the statements
    # that name it run: they are rolled back, the Redis copy stays, no death is counted.
    refusing = SomeKeysElsewhere(object_store, "messages/", f"kave-missing-{uuid.uuid4().hex[:8]}")
    with email_transaction_timed() as seen, pytest.raises(ClientError):
        process_delivery(worker.context(refusing), envelope)

    assert "insert" in seen  # the refusal came while the transaction was open
    assert_nothing_recorded_then_the_retry_stores_once(worker, object_store, envelope)


def test_on_the_local_store_an_email_commits_once_its_objects_are_stored(
    worker: Worker, tmp_path: Path
) -> None:
    """With the worker's own resources for the local store (no upload threads: each put
    is made in turn, before the transaction), a slow disk delays the commit too."""
    settings = worker.settings.model_copy(
        update={"object_store": "local", "local_store_dir": tmp_path}
    )
    try:
        slow = SlowDisk(tmp_path, 0.3)
        ctx = dataclasses.replace(ingest_context(settings), object_store=slow)
        envelope = received_in_redis(worker.redis, one_email())
        with email_transaction_timed() as seen:
            result = process_delivery(ctx, envelope)
    finally:
        release()

    assert result.outcomes == {"stored": 1}
    email_objects = [key for key in slow.stored_at if key.startswith(EMAIL_OBJECT_PREFIXES)]
    assert len(email_objects) == 2  # the raw message and the attachment
    assert all(slow.stored_at[key] < seen["commit"] for key in email_objects)
    assert slow.exists(archive_object_key(envelope.body_sha256))
