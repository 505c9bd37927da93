"""One event of a delivery: prepare it (parse, start uploading its objects), then commit
its result, with the delivery rows its owner decided it writes, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from sqlalchemy.orm import Session

from shared.contract import Envelope, archive_object_key
from shared.lifecycle.objects import ArchiveRemovedMeanwhileError, reclaim
from shared.models import EventOutcome
from shared.objectstore import ObjectStore
from worker import metrics as worker_metrics
from worker.errors import (
    event_failure_class,
    event_failure_reason,
    safe_traceback,
)
from worker.handoff.outbox import NewDispatch
from worker.ingest import parsing
from worker.ingest.context import IngestContext
from worker.ingest.derive.text_formats import PENDING
from worker.ingest.rows import email_rows, event_values
from worker.ingest.storage.activity import count_inbound
from worker.ingest.storage.dead_letters import record_dead_letter, resolve_dead_letter
from worker.ingest.storage.deliveries import (
    DeliveryAttempt,
    finish_delivery,
    record_delivery,
    record_outcome,
)
from worker.ingest.storage.emails import insert_event, outcome_for, store_email
from worker.ingest.storage.objects import email_objects, start_email_objects
from worker.ingest.storage.threads import with_stored_conversation
from worker.interrupts import INTERRUPTS
from worker.pending_puts import PendingPuts

log = structlog.get_logger(__name__)

T = TypeVar("T")


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
                record_delivery(
                    session,
                    self.attempt.envelope,
                    self.attempt.archive_key,
                    finish_with_events=self.attempt.finish_with_events,
                )
        elif self.finish_with_events is not None:
            finish_delivery(session, delivery_id, event_count=self.finish_with_events)
        if self.finish_with_events is not None and self.resolve:
            resolve_dead_letter(session, delivery_id, None)

    @property
    def named_archive(self) -> str | None:
        """The archive key a row of this transaction names (when it records an attempt)."""
        attempt = self.attempt
        return attempt.archive_key if attempt is not None else None

    @property
    def attempt(self) -> DeliveryAttempt | None:
        """The attempt to record (with the end too, when this transaction writes both:
        one statement), if this transaction records one."""
        if not self.record_attempt:
            return None
        return DeliveryAttempt(
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
    objects = email_objects(email) if email is not None else {}
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
    objects = email_objects(email) if email is not None else {}
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
    # An email's columns computed with I/O before its transaction: the sender-trust
    # verdict (DNS) and each attachment's malware scan (clamd).
    trust: Mapping[str, Any] | None = None
    scans: Sequence[Mapping[str, Any]] | None = None

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
            objects = start_email_objects(ctx.object_store, email, uploads=ctx.uploads)
            # While the objects upload: the sender's DNS look-ups and the scans.
            try:
                trust, scans = io_columns(ctx, email)
            except BaseException:
                objects.cancel()
                raise
            return PreparedEvent(index, kind, email, objects=objects, trust=trust, scans=scans)
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
    text_pending: list[str] | None = None,
) -> str:
    """Write a prepared event's result (or its dead letter) in one transaction, with
    the ``delivery`` rows if any; returns the outcome.

    ``text_pending`` gets, once committed, the contents (sha256) of a new email's
    attachments that wait for their text: the caller queues their conversion.

    ``handed`` gets the dispatch rows of a new email once they have committed: the caller
    hands them over (``worker.handoff.tasks.hand_off_new``). Without it they are due for
    the sweep.

    When the database refuses the result's rows, that transaction is rolled back and a
    second one records the refusal instead (with the same delivery rows).
    """
    bound = log.bind(event_index=prepared.index, kind=prepared.kind)
    if prepared.failure is None:
        fresh: list[NewDispatch] | None = [] if handed is not None else None
        pending: list[str] = []
        objects = prepared.objects
        try:
            with ctx.session_factory() as session, session.begin():
                outcome = _write_result(
                    session,
                    ctx,
                    delivery_id,
                    prepared,
                    delivery=delivery,
                    replaying=replaying,
                    handed=fresh,
                    text_pending=pending,
                )
                # The rows name the email's objects, whose puts ran during the statements
                # above: the commit waits for them, and a failed put rolls the rows back.
                objects.wait()
                if outcome == EventOutcome.STORED and isinstance(
                    prepared.parsed, parsing.ParsedEmail
                ):
                    count_inbound(session, prepared.parsed.envelope_recipient)
        except Exception as exc:
            if event_failure_class(exc) is None:
                raise  # transient or unknown: the task decides whether to retry
            prepared = prepared.failed(exc)
        else:
            if handed is not None and fresh:
                handed.extend(fresh)
            if text_pending is not None:
                text_pending.extend(pending)
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
        record_dead_letter(
            session,
            delivery_id,
            prepared.index,
            kind=prepared.kind,
            error_class=error_class,
            message=reason,
            traceback=safe_traceback(failure),
        )
        record_outcome(
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
    ctx: IngestContext,
    delivery_id: str,
    prepared: PreparedEvent,
    *,
    delivery: DeliveryWrites | None,
    replaying: bool,
    handed: list[NewDispatch] | None = None,
    text_pending: list[str] | None = None,
) -> str:
    """Write a prepared result's rows, the ``delivery`` rows and the claims on the
    objects they name; returns the outcome."""
    index, kind, parsed = prepared.index, prepared.kind, prepared.parsed
    archive = delivery.named_archive if delivery is not None else None
    if isinstance(parsed, parsing.ParsedEmail):
        # The delivery's attempt, the email's rows, the outcome and the claims on their
        # objects go in one statement (worker.ingest.storage.emails.store_email).
        attempt = delivery.attempt if delivery is not None else None
        # A reply joins the conversation of a stored parent (worker.ingest.storage.threads).
        rows = with_stored_conversation(session, email_rows(parsed, prepared.trust, prepared.scans))
        stored = store_email(
            session, rows, delivery_id, index, outbox=ctx.outbox, handed=handed, attempt=attempt
        )
        if delivery is not None:
            delivery.write(session, attempt_written=attempt is not None)
        new_email = parsed if stored.outcome == EventOutcome.STORED else None
        if new_email is not None and text_pending is not None:
            text_pending.extend(
                {a["sha256"] for a in rows.attachments if a.get("text_status") == PENDING}
            )
        put_back_removed(ctx.object_store, stored.removed_keys, archive=archive, email=new_email)
        outcome = stored.outcome
    else:
        assert parsed is not None
        if delivery is not None:
            delivery.write(session)
        event_id, created = insert_event(session, event_values(parsed), delivery_id)
        outcome = outcome_for(created)
        record_outcome(session, delivery_id, index, kind, outcome, event_id=event_id)
        reclaim_objects(session, ctx.object_store, archive=archive)
    if replaying:
        resolve_dead_letter(session, delivery_id, index)
    return outcome


def io_columns(
    ctx: IngestContext, email: parsing.ParsedEmail
) -> tuple[Mapping[str, Any] | None, Sequence[Mapping[str, Any]] | None]:
    """An email's columns that need I/O: its sender-trust verdict and its attachments'
    scans (each None when that check is off). Neither fails the email: a DNS or clamd
    that does not answer gives ``unknown`` or ``unscanned``."""
    trust = ctx.sender_trust.columns(email) if ctx.sender_trust is not None else None
    scans = ctx.scanner.scan_all(email.attachments) if ctx.scanner is not None else None
    return trust, scans


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
