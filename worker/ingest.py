"""The ingest service: one delivery in, exactly one recorded result per event out.

Steps, each safe to repeat after a crash at any point:
1. check whether a previous attempt died (``worker.losses``) and which events it finished;
2. load the body (Redis, or the object store for claim-checked and already archived
   bodies), check its sha256 against the envelope, archive it content-addressed (on S3,
   on the upload threads while the first event is prepared: see ``worker.pending_puts``);
3. process each event of the batch on its own, skipping those a previous attempt
   finished: prepare it (parse, start uploading its objects; ``prepare_event``), then
   write its result in one transaction that commits once they are stored
   (``commit_event``); an event that can never succeed becomes a dead letter with its
   reason and the rest of the batch goes on;
4. mark the delivery processed and drop the Redis copy of the body.
``process_delivery`` decides what each event's transaction writes of the delivery's own
rows (``DeliveryWrites``): the attempt with the first event, the end with the last, so
a one-email delivery costs a single commit.

Transient failures (a service down) propagate to the task, which retries the delivery;
the work already committed is skipped on the next attempt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from redis import Redis
from sqlalchemy.orm import Session

from shared.accepted import AcceptedLedger
from shared.contract import Envelope, archive_object_key, payload_redis_key
from shared.formdata import EVENTS_FIELD, FormDecodeError, field_value_utf8
from shared.lifecycle.objects import ArchiveRemovedMeanwhileError, reclaim
from shared.models import Delivery, EventOutcome
from shared.objectstore import ObjectNotFoundError, ObjectStore
from worker import metrics as worker_metrics
from worker import parsing, storage
from worker.errors import (
    PermanentDeliveryError,
    event_failure_class,
    event_failure_reason,
    safe_traceback,
)
from worker.handoff_inline import NewDispatch
from worker.interrupts import INTERRUPTS
from worker.losses import BODY_STAGE, LossTracker
from worker.pending_puts import PendingPuts

log = structlog.get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class IngestContext:
    session_factory: Callable[[], AbstractContextManager[Session]]
    object_store: ObjectStore
    redis: Redis
    # The receiver's entries of accepted deliveries (shared.accepted) on the worker's
    # queue: a delivery's entry goes with its body's copy when it ends.
    ledger: AcceptedLedger
    max_worker_losses: int = 3
    email_limits: parsing.EmailLimits = parsing.DEFAULT_LIMITS
    # The process's upload threads, for a store whose puts wait on the network (None:
    # one after another; see worker.resources).
    uploads: Executor | None = None


@dataclass
class DeliveryResult:
    delivery_id: str
    event_count: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    # The dispatch rows committed with this delivery's new emails, to hand over now.
    new_dispatches: list[NewDispatch] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def envelope_for(delivery: Delivery) -> Envelope:
    """An envelope that reads a recorded delivery back from its archive."""
    return Envelope(
        delivery_id=delivery.id,
        received_at=delivery.received_at.isoformat(),
        body_sha256=delivery.body_sha256,
        body_size=delivery.body_size,
        payload_store="object",
        payload_key=delivery.archive_key,
        request_id=delivery.request_id,
    )


def load_body(ctx: IngestContext, envelope: Envelope) -> bytes:
    """The body, from wherever it is: the Redis copy or the archive (either may be gone:
    the Redis copy once archived, the archive when archiving failed)."""
    return fetch_body(ctx, envelope)[0]


def fetch_body(
    ctx: IngestContext, envelope: Envelope, redis_copy: bytes | None = None
) -> tuple[bytes, bool]:
    """The body, and whether it came from the archive (then it needs no archiving).
    ``redis_copy``: the Redis copy, already read (None: read it here, if there is one)."""
    archive_key = archive_object_key(envelope.body_sha256)
    redis_key = (
        envelope.payload_key
        if envelope.payload_store == "redis"
        else payload_redis_key(envelope.delivery_id)
    )
    body = redis_copy
    archived = False
    if body is None and envelope.payload_store == "redis":
        body = ctx.redis.get(redis_key)  # type: ignore[assignment]
    if body is None:
        try:
            body = ctx.object_store.get(archive_key)
            archived = True
        except ObjectNotFoundError:
            body = ctx.redis.get(redis_key)  # type: ignore[assignment]
    if body is None:
        raise PermanentDeliveryError("the body is neither in Redis nor in the archive")
    if hashlib.sha256(body).hexdigest() != envelope.body_sha256:
        raise PermanentDeliveryError("the body does not match the sha256 in its envelope")
    return body, archived


def archive_body(ctx: IngestContext, envelope: Envelope, body: bytes) -> None:
    # No existence check first: the key is content-addressed, so writing it again (on a
    # redelivery) stores the same bytes, and a check costs a round trip every time.
    # Stored as opaque bytes: some S3 front ends (moto's, through Werkzeug) parse a
    # form-typed PUT body instead of storing it.
    ctx.object_store.put(archive_object_key(envelope.body_sha256), body)


# Bodies up to this size are archived while the first event is prepared: such a body is
# held by the upload thread meanwhile, so bigger ones (claim-checked ones are archived
# already) are archived first and dropped early, as read_batch expects.
OVERLAPPED_ARCHIVE_MAX_BYTES = 1024 * 1024
# Bodies in Redis up to this size are read with the loss marker (one round trip less):
# the caller holds such a body until the batch is read, so bigger ones are read there.
PREFETCHED_BODY_MAX_BYTES = OVERLAPPED_ARCHIVE_MAX_BYTES


def _overlaps_archive(ctx: IngestContext, envelope: Envelope, died: tuple[str, int] | None) -> bool:
    """Whether this attempt archives the body while preparing the first event: on S3
    (upload threads), for a body in Redis small enough to hold meanwhile, and not after
    a death, so that a retry tells a death in the put from one in the first event."""
    return (
        died is None
        and ctx.uploads is not None
        and envelope.payload_store == "redis"
        and envelope.body_size <= OVERLAPPED_ARCHIVE_MAX_BYTES
    )


def process_delivery(
    ctx: IngestContext, envelope: Envelope, *, replaying: bool = False
) -> DeliveryResult:
    with ctx.session_factory() as session:
        # A single read needs no transaction: autocommit spares the BEGIN and ROLLBACK
        # round trips around it.
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        done = storage.finished_indexes(session, envelope.delivery_id)
    tracker = LossTracker(ctx.redis, envelope.delivery_id)
    died, redis_copy = _begin(tracker, envelope)

    result = DeliveryResult(delivery_id=envelope.delivery_id)
    loaded = _load_events(ctx, envelope, tracker, died, redis_copy)
    del redis_copy
    if loaded is None:
        return result
    events, archive = loaded

    result.event_count = len(events)
    pending = [index for index in range(len(events)) if index not in done]
    # The delivery's own rows ride in the transactions of its events: the attempt is
    # recorded with the first result, the delivery's end with the last (a single-email
    # delivery commits once; PostgreSQL's WAL flush per commit is the worker's main
    # cost). Each flag turns true once the transaction that wrote it has committed.
    recorded = finished = False
    try:
        for index in pending:
            event = events[index]
            if _lost_too_often(ctx, died, str(index)):
                archive.wait()  # its dead letter names the archive
                result.count(_dead_letter_lost_event(ctx, envelope, index, event))
                worker_metrics.event_dead_lettered(parsing.event_kind(event), "worker_lost")
                continue
            last = index == pending[-1]
            writes = DeliveryWrites(
                envelope,
                record_attempt=not recorded,
                finish_with_events=len(events) if last else None,
                resolve=replaying,
            )
            if archive.in_flight:
                # The marker stays at the body stage until the archive is stored: a
                # death meanwhile counts there, and the next attempt, which does not
                # overlap them (_overlaps_archive), tells which of the two it was.
                prepared = prepare_event(ctx, index, event)
                archive.wait()
                tracker.enter(index)
            else:
                tracker.enter(index)
                prepared = prepare_event(ctx, index, event)
            result.count(
                commit_event(
                    ctx,
                    envelope.delivery_id,
                    prepared,
                    delivery=writes,
                    handed=result.new_dispatches,
                )
            )
            recorded, finished = True, last
        # When no event was left to prepare, the archive is waited for here: still at the
        # body stage, as a put made before the events would have been.
        archive.wait()
    except INTERRUPTS:
        # Out of time: the marker stays, so the next attempt counts a loss at this event
        # like a killed worker's, and an event that always runs out of time becomes a
        # worker_lost dead letter instead of being retried until the deadline.
        raise
    except BaseException:
        tracker.leave()
        raise

    if not finished:
        writes = DeliveryWrites(
            envelope,
            record_attempt=not recorded,
            finish_with_events=len(events),
            resolve=replaying,
        )
        try:
            with ctx.session_factory() as session, session.begin():
                writes.write(session)
                reclaim_objects(session, ctx.object_store, archive=writes.named_archive)
        except BaseException:
            tracker.leave()  # every event is done: nothing here is a worker's loss
            raise
    worker_metrics.delivery_finished(envelope.received_at, replaying=replaying)
    # The marker, the Redis copy of the body (also after a replay from the archive, whose
    # envelope does not name it) and the delivery's entry in the ledger of accepted
    # deliveries go in one command.
    tracker.leave_deleting(*ctx.ledger.receiver_keys(envelope.delivery_id))
    return result


def _begin(tracker: LossTracker, envelope: Envelope) -> tuple[tuple[str, int] | None, bytes | None]:
    """This attempt works on the body now: did a previous one die somewhere? And the
    body's Redis copy, read in the same round trip when small enough to hold meanwhile
    (None: not read)."""
    if envelope.payload_store == "redis" and envelope.body_size <= PREFETCHED_BODY_MAX_BYTES:
        died, redis_copy = tracker.begin_reading(BODY_STAGE, envelope.payload_key)
    else:
        died, redis_copy = tracker.begin(BODY_STAGE), None
    if died:
        log.warning("delivery.worker_lost_before", stage=died[0], losses=died[1])
    return died, redis_copy


def _load_events(
    ctx: IngestContext,
    envelope: Envelope,
    tracker: LossTracker,
    died: tuple[str, int] | None,
    redis_copy: bytes | None = None,
) -> tuple[list[Any], PendingPuts] | None:
    """The batch's events and the body's archive put; None when the delivery was
    dead-lettered instead. ``redis_copy``: the body's Redis copy, if already read."""
    if _lost_too_often(ctx, died, BODY_STAGE):
        tracker.leave()  # not working on the body after all
        lost = PermanentDeliveryError(_worker_lost_message(ctx))
        dead_letter_delivery(ctx, envelope, "worker_lost", lost)
        worker_metrics.delivery_dead_lettered("worker_lost")
        return None
    try:
        # The tracker is in the body stage (process_delivery).
        if _overlaps_archive(ctx, envelope, died):
            return _read_batch_archiving(ctx, envelope, redis_copy)
        # The body is handed over, not kept here: read_batch drops it before decoding
        # the JSON (for a 55 MB body, one copy less at the worker's memory peak; such a
        # body is never read ahead: PREFETCHED_BODY_MAX_BYTES).
        return read_batch(_archived_body(ctx, envelope, redis_copy)), PendingPuts()
    except PermanentDeliveryError as exc:
        _dead_letter_body(ctx, envelope, tracker, "unreadable", exc)
        tracker.leave()
        return None
    except parsing.BatchError as exc:
        _dead_letter_body(ctx, envelope, tracker, "invalid_batch", exc)
        tracker.leave_deleting(*ctx.ledger.receiver_keys(envelope.delivery_id))
        return None
    except INTERRUPTS:
        raise  # counted as a loss at the body (see process_delivery)
    except Exception:
        tracker.leave()
        raise


def _read_batch_archiving(
    ctx: IngestContext, envelope: Envelope, redis_copy: bytes | None
) -> tuple[list[Any], PendingPuts]:
    """The batch's events, with the body's archive put started on an upload thread."""
    assert ctx.uploads is not None
    body, archived = fetch_body(ctx, envelope, redis_copy)
    archive = PendingPuts(
        [] if archived else [ctx.uploads.submit(archive_body, ctx, envelope, body)]
    )
    try:
        return read_batch(body), archive
    except parsing.BatchError:
        archive.wait()  # its dead letter names the archive, and the Redis copy goes
        raise


def _archived_body(ctx: IngestContext, envelope: Envelope, redis_copy: bytes | None) -> bytes:
    body, archived = fetch_body(ctx, envelope, redis_copy)
    if not archived:
        archive_body(ctx, envelope, body)
    return body


def _dead_letter_body(
    ctx: IngestContext,
    envelope: Envelope,
    tracker: LossTracker,
    error_class: str,
    exc: Exception,
) -> None:
    """Dead-letter a delivery whose body cannot be processed. When that cannot be
    written (the database down), the task retries: the marker goes, so the next attempt
    counts no worker lost at the body (three such outages would have turned it into a
    ``worker_lost`` dead letter instead of saying what is wrong with the body)."""
    try:
        dead_letter_delivery(ctx, envelope, error_class, exc)
    except INTERRUPTS:
        raise  # out of time: the marker stays, as for any attempt cut off (see above)
    except Exception:
        tracker.leave()
        raise
    worker_metrics.delivery_dead_lettered(error_class)


def _lost_too_often(ctx: IngestContext, died: tuple[str, int] | None, stage: str) -> bool:
    return died is not None and died[0] == stage and died[1] >= ctx.max_worker_losses


def _worker_lost_message(ctx: IngestContext) -> str:
    return (
        f"processing this ended its worker {ctx.max_worker_losses} times (killed, out of "
        "memory or over the time limit); replay it once the cause is fixed"
    )


def _dead_letter_lost_event(ctx: IngestContext, envelope: Envelope, index: int, event: Any) -> str:
    kind = parsing.event_kind(event)
    delivery_id = envelope.delivery_id
    with ctx.session_factory() as session, session.begin():
        # The attempt that died may have committed nothing, not even the delivery row.
        storage.ensure_delivery(session, envelope, archive_object_key(envelope.body_sha256))
        storage.record_dead_letter(
            session,
            delivery_id,
            index,
            kind=kind,
            error_class="worker_lost",
            message=_worker_lost_message(ctx),
            traceback=None,
        )
        storage.record_outcome(session, delivery_id, index, kind, EventOutcome.FAILED)
    log.error("event.dead_lettered", event_index=index, kind=kind, error_class="worker_lost")
    return EventOutcome.FAILED


def dead_letter_delivery(
    ctx: IngestContext,
    envelope: Envelope,
    error_class: str,
    exc: BaseException,
    message: str | None = None,
) -> None:
    """The whole delivery cannot be processed: record it, and say why (``message``, or
    the exception's own message where it holds no content)."""
    if message is None:
        message = (
            str(exc)
            if isinstance(exc, PermanentDeliveryError | parsing.BatchError)
            else f"{type(exc).__name__}; replay once the cause is fixed"
        )
    with ctx.session_factory() as session, session.begin():
        storage.ensure_delivery(session, envelope, archive_object_key(envelope.body_sha256))
        storage.record_dead_letter(
            session,
            envelope.delivery_id,
            None,
            kind=None,
            error_class=error_class,
            message=message,
            traceback=safe_traceback(exc),
        )
        storage.finish_delivery(session, envelope.delivery_id, event_count=None, error=message)
    log.error("delivery.dead_lettered", error_class=error_class, reason=message)


def read_batch(body: bytes) -> list[Any]:
    """The batch's events. Callers pass their only reference to the body: it is
    dropped once the events value is out of it, before that value is decoded."""
    try:
        # Only the events value is built (not every field, nor a decoded copy of the
        # whole body): what decode_form would give for it, refusing the same bodies.
        value = field_value_utf8(body, EVENTS_FIELD)
    except FormDecodeError as exc:
        raise parsing.BatchError(str(exc)) from exc
    del body  # a 55 MB body is gone before its 48 MB value becomes a str
    if value is None:
        raise parsing.BatchError("the body has no mandrill_events field")
    text = value.decode("utf-8")  # its pieces were str encoded: it decodes
    del value
    return parsing.parse_batch(text)


def read_event(ctx: IngestContext, envelope: Envelope, index: int) -> Any:
    """One event of an archived delivery (for replays)."""
    events = read_batch(load_body(ctx, envelope))
    if index >= len(events):
        raise PermanentDeliveryError(f"the batch has no event {index}")
    return events[index]


@dataclass(frozen=True)
class DeliveryWrites:
    """The delivery's own rows that an event's transaction writes too (see
    ``process_delivery``): decided by the delivery's owner, written first in the
    transaction (or in the statement of an email's rows: ``attempt``), since the
    delivery row must exist before rows refer to it."""

    envelope: Envelope
    record_attempt: bool = False  # count the attempt (creating the row on the first)
    finish_with_events: int | None = None  # mark the delivery processed, with its count
    resolve: bool = False  # with the end: resolve its delivery-level dead letter (replay)

    def write(self, session: Session, *, attempt_written: bool = False) -> None:
        """Write the delivery's rows; with ``attempt_written``, those that
        :attr:`attempt` does not (a statement of the transaction wrote it)."""
        delivery_id = self.envelope.delivery_id
        if self.attempt is not None:
            if not attempt_written:
                storage.record_delivery(
                    session,
                    self.attempt.envelope,
                    self.attempt.archive_key,
                    finish_with_events=self.attempt.finish_with_events,
                )
        elif self.finish_with_events is not None:
            storage.finish_delivery(session, delivery_id, event_count=self.finish_with_events)
        if self.finish_with_events is not None and self.resolve:
            storage.resolve_dead_letter(session, delivery_id, None)

    @property
    def named_archive(self) -> str | None:
        """The archive key a row of this transaction names (when it records an attempt)."""
        attempt = self.attempt
        return attempt.archive_key if attempt is not None else None

    @property
    def attempt(self) -> storage.DeliveryAttempt | None:
        """The attempt to record (with the end too, when this transaction writes both:
        one statement), if this transaction records one."""
        if not self.record_attempt:
            return None
        return storage.DeliveryAttempt(
            self.envelope,
            archive_object_key(self.envelope.body_sha256),
            self.finish_with_events,
        )


def reclaim_objects(
    session: Session,
    store: ObjectStore,
    *,
    archive: str | None = None,
    email: parsing.ParsedEmail | None = None,
) -> None:
    """Claim back from retention and erasure the objects this transaction's new rows name
    (``archive``: a new delivery row's; ``email``: a new email's), in one statement.

    Objects are content-addressed, so a drain (shared/lifecycle/objects.py) may have
    removed one of them, for rows it deleted, between this worker's upload and now: an
    email's object is put back from the bytes still held; the archive, no longer held,
    makes the attempt retry (it is written again from the Redis copy).
    """
    objects = storage.email_objects(email) if email is not None else {}
    keys = [*objects, *([archive] if archive else [])]
    if keys:
        put_back_removed(store, reclaim(session, keys), archive=archive, email=email)


def put_back_removed(
    store: ObjectStore,
    removed: Iterable[str],
    *,
    archive: str | None = None,
    email: parsing.ParsedEmail | None = None,
) -> None:
    """Put back the claimed objects a drain ``removed`` (see :func:`reclaim_objects`):
    an email's from its bytes; the archive's removal makes the attempt retry."""
    objects = storage.email_objects(email) if email is not None else {}
    for key in removed:
        if key == archive:
            raise ArchiveRemovedMeanwhileError(key)
        data, content_type = objects[key]
        store.put(key, data, content_type)
        log.info("object.restored_after_drain", object_key=key)


@dataclass(frozen=True)
class PreparedEvent:
    """An event made ready to write: parsed, its objects uploaded or under way
    (``objects``); or its permanent failure. Nothing of it is in the database yet."""

    index: int
    kind: str
    parsed: parsing.ParsedEmail | parsing.ParsedEvent | None
    failure: Exception | None = None
    objects: PendingPuts = field(default_factory=PendingPuts)

    def failed(self, exc: Exception) -> PreparedEvent:
        return PreparedEvent(self.index, self.kind, None, exc)


def prepare_event(ctx: IngestContext, index: int, event: Any) -> PreparedEvent:
    """Parse an event and, for an email, start uploading its objects (a transaction that
    names them commits only once they are stored: ``commit_event``).

    A permanent failure is returned, to be recorded; anything else (a service down, an
    unknown error) is raised, for the task to retry.
    """
    kind = parsing.event_kind(event)
    try:
        if kind == "inbound":
            # The limits are checked while parsing, so an email over one is refused
            # before anything of it is uploaded.
            email = _parse(lambda value: parsing.parse_inbound(value, ctx.email_limits), event)
            objects = storage.start_email_objects(ctx.object_store, email, uploads=ctx.uploads)
            return PreparedEvent(index, kind, email, objects=objects)
        return PreparedEvent(index, kind, _parse(parsing.parse_event, event))
    except Exception as exc:
        if event_failure_class(exc) is None:
            raise  # transient or unknown: the task decides whether to retry
        return PreparedEvent(index, kind, None, exc)


def commit_event(
    ctx: IngestContext,
    delivery_id: str,
    prepared: PreparedEvent,
    *,
    replaying: bool = False,
    delivery: DeliveryWrites | None = None,
    handed: list[NewDispatch] | None = None,
) -> str:
    """Write a prepared event's result (or its dead letter) in one transaction, with
    the ``delivery`` rows if any; returns the outcome.

    ``handed`` gets the dispatch rows of a new email once they have committed: the caller
    hands them over (``worker.handoff_tasks.hand_off_new``). Without it they are due for
    the sweep.

    When the database refuses the result's rows, that transaction is rolled back and a
    second one records the refusal instead (with the same delivery rows).
    """
    bound = log.bind(event_index=prepared.index, kind=prepared.kind)
    if prepared.failure is None:
        fresh: list[NewDispatch] | None = [] if handed is not None else None
        objects = prepared.objects
        try:
            with ctx.session_factory() as session, session.begin():
                outcome = _write_result(
                    session,
                    ctx.object_store,
                    delivery_id,
                    prepared,
                    delivery=delivery,
                    replaying=replaying,
                    handed=fresh,
                )
                # The rows name the email's objects, whose puts ran during the statements
                # above: the commit waits for them, and a failed put rolls the rows back.
                objects.wait()
        except Exception as exc:
            if event_failure_class(exc) is None:
                raise  # transient or unknown: the task decides whether to retry
            prepared = prepared.failed(exc)
        else:
            if handed is not None and fresh:
                handed.extend(fresh)
            bound.debug("event.processed", outcome=outcome)
            worker_metrics.count_event(prepared.kind, outcome)
            return outcome
        finally:
            objects.cancel()  # after a failure, nothing will name those not started yet

    failure = prepared.failure
    assert failure is not None
    error_class = event_failure_class(failure) or "invalid_event"
    reason = event_failure_reason(failure)
    with ctx.session_factory() as session, session.begin():
        if delivery is not None:
            delivery.write(session)
            reclaim_objects(session, ctx.object_store, archive=delivery.named_archive)
        storage.record_dead_letter(
            session,
            delivery_id,
            prepared.index,
            kind=prepared.kind,
            error_class=error_class,
            message=reason,
            traceback=safe_traceback(failure),
        )
        storage.record_outcome(
            session, delivery_id, prepared.index, prepared.kind, EventOutcome.FAILED, error=reason
        )
    bound.warning("event.dead_lettered", error_class=error_class, reason=reason)
    worker_metrics.event_dead_lettered(prepared.kind, error_class)
    return EventOutcome.FAILED


def process_event(
    ctx: IngestContext, delivery_id: str, index: int, event: Any, *, replaying: bool = False
) -> str:
    """Process one event on its own (replays, reprocessing) and record its result (or
    its dead letter); returns the outcome."""
    prepared = prepare_event(ctx, index, event)
    return commit_event(ctx, delivery_id, prepared, replaying=replaying)


def _write_result(
    session: Session,
    store: ObjectStore,
    delivery_id: str,
    prepared: PreparedEvent,
    *,
    delivery: DeliveryWrites | None,
    replaying: bool,
    handed: list[NewDispatch] | None = None,
) -> str:
    """Write a prepared result's rows, the ``delivery`` rows and the claims on the
    objects they name; returns the outcome."""
    index, kind, parsed = prepared.index, prepared.kind, prepared.parsed
    archive = delivery.named_archive if delivery is not None else None
    if isinstance(parsed, parsing.ParsedEmail):
        # The delivery's attempt, the email's rows, the outcome and the claims on their
        # objects go in one statement (worker.storage.store_email).
        attempt = delivery.attempt if delivery is not None else None
        stored = storage.store_email(session, parsed, delivery_id, index, handed, attempt=attempt)
        if delivery is not None:
            delivery.write(session, attempt_written=attempt is not None)
        new_email = parsed if stored.outcome == EventOutcome.STORED else None
        put_back_removed(store, stored.removed_keys, archive=archive, email=new_email)
        outcome = stored.outcome
    else:
        assert parsed is not None
        if delivery is not None:
            delivery.write(session)
        event_id, created = storage.insert_event(session, parsed, delivery_id)
        outcome = storage.outcome_for(created)
        storage.record_outcome(session, delivery_id, index, kind, outcome, event_id=event_id)
        reclaim_objects(session, store, archive=archive)
    if replaying:
        storage.resolve_dead_letter(session, delivery_id, index)
    return outcome


def _parse(parser: Callable[[Any], T], event: Any) -> T:
    """Run a pure parser; whatever it raises, it would raise again on the same input."""
    try:
        return parser(event)
    except parsing.PermanentEventError:
        raise
    except INTERRUPTS:
        raise  # a time limit is no verdict on the input: the task retries it
    except Exception as exc:
        # The exception text may quote the payload, so only its type is kept (the dead
        # letter's traceback shows where it was raised).
        raise parsing.PermanentEventError(
            f"the parser failed with {type(exc).__name__}; reprocess after a fix"
        ) from exc
