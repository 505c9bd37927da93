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
from typing import Any

import structlog

from shared.contract import Envelope, archive_object_key, payload_redis_key
from shared.formdata import EVENTS_FIELD, FormDecodeError, field_value_utf8
from shared.models import EventOutcome
from shared.objectstore import ObjectNotFoundError
from worker import metrics as worker_metrics
from worker.errors import (
    PermanentDeliveryError,
    safe_traceback,
)
from worker.ingest import parsing
from worker.ingest.commit import DeliveryWrites, commit_event, prepare_event, reclaim_objects
from worker.ingest.context import DeliveryResult, IngestContext
from worker.ingest.storage.dead_letters import record_dead_letter
from worker.ingest.storage.deliveries import (
    ensure_delivery,
    finish_delivery,
    finished_indexes,
    record_outcome,
)
from worker.interrupts import INTERRUPTS
from worker.losses import BODY_STAGE, LossTracker
from worker.pending_puts import PendingPuts

log = structlog.get_logger(__name__)


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
        done = finished_indexes(session, envelope.delivery_id)
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
                    text_pending=result.text_pending,
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
        ensure_delivery(session, envelope, archive_object_key(envelope.body_sha256))
        record_dead_letter(
            session,
            delivery_id,
            index,
            kind=kind,
            error_class="worker_lost",
            message=_worker_lost_message(ctx),
            traceback=None,
        )
        record_outcome(session, delivery_id, index, kind, EventOutcome.FAILED)
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
        ensure_delivery(session, envelope, archive_object_key(envelope.body_sha256))
        record_dead_letter(
            session,
            envelope.delivery_id,
            None,
            kind=None,
            error_class=error_class,
            message=message,
            traceback=safe_traceback(exc),
        )
        finish_delivery(session, envelope.delivery_id, event_count=None, error=message)
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
