"""Re-deriving rows from the raw archive, e.g. after a parser fix.

Every accepted delivery's body is archived, so the parser can be run again over it and
the stored rows brought up to date. It is idempotent: on unchanged code it changes
nothing, and run twice it changes things once. With ``dry_run`` it only reports. A
delivery whose archive was erased or removed by retention is left alone (action
``not_reprocessable``), asked again just before it is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from shared.lifecycle.erased import refusal
from shared.models import Delivery, DeliveryEvent, Email, Event, EventOutcome
from worker.errors import PermanentDeliveryError
from worker.ingest import parsing
from worker.ingest.batch import load_body, read_batch
from worker.ingest.commit import io_columns, process_event
from worker.ingest.context import IngestContext, envelope_for
from worker.ingest.rows import EmailRows, email_rows, event_values
from worker.ingest.scan import UNSCANNED
from worker.ingest.storage.activity import count_inbound
from worker.ingest.storage.dead_letters import resolve_dead_letter
from worker.ingest.storage.deliveries import finish_delivery, record_outcome
from worker.ingest.storage.emails import insert_email, outcome_for, replace_email
from worker.ingest.storage.objects import store_email_objects
from worker.ingest.storage.threads import with_stored_conversation
from worker.interrupts import INTERRUPTS

log = structlog.get_logger(__name__)

# Columns that describe how and when a row was first stored, not what was parsed.
_BOOKKEEPING = frozenset({"id", "delivery_id", "received_at", "created_at", "dedup_key"})


@dataclass(frozen=True)
class Change:
    delivery_id: str
    event_index: int | None
    action: str  # create | update | resolve | now_fails | unreadable | not_reprocessable
    detail: str

    def __str__(self) -> str:
        where = f"{self.delivery_id}" + (
            f" event {self.event_index}" if self.event_index is not None else ""
        )
        return f"{where}: {self.action} {self.detail}".rstrip()


# Deliveries read per query: a year of mail is never held at once (bounded memory).
DELIVERY_BATCH = 500


def deliveries_between(
    ctx: IngestContext,
    *,
    since: datetime | None,
    until: datetime | None,
    batch: int = DELIVERY_BATCH,
) -> Iterator[list[Delivery]]:
    """The deliveries received in [since, until), oldest first, ``batch`` at a time:
    keyset pages on (received_at, id), served by ``ix_deliveries_received``."""
    after: tuple[datetime, str] | None = None
    while True:
        query = select(Delivery).order_by(Delivery.received_at, Delivery.id).limit(batch)
        if since is not None:
            query = query.where(Delivery.received_at >= since)
        if until is not None:
            query = query.where(Delivery.received_at < until)
        if after is not None:
            query = query.where(tuple_(Delivery.received_at, Delivery.id) > after)
        with ctx.session_factory() as session:
            found = list(session.scalars(query))
        if not found:
            return
        yield found
        after = (found[-1].received_at, found[-1].id)


def reprocess(ctx: IngestContext, deliveries: list[Delivery], *, dry_run: bool) -> list[Change]:
    changes: list[Change] = []
    for delivery in deliveries:
        with ctx.session_factory() as session:
            current = session.get(Delivery, delivery.id)  # an erasure may have run since
        refused = refusal(current, "reprocessed") if current is not None else None
        if refused is not None:
            changes.append(Change(delivery.id, None, "not_reprocessable", f"({refused})"))
            continue
        envelope = envelope_for(delivery)
        try:
            events = read_batch(load_body(ctx, envelope))
        except (PermanentDeliveryError, parsing.BatchError) as exc:
            changes.append(Change(delivery.id, None, "unreadable", str(exc)))
            continue
        with ctx.session_factory() as session:
            outcomes = {
                row.index: row.outcome
                for row in session.scalars(
                    select(DeliveryEvent).where(DeliveryEvent.delivery_id == delivery.id)
                )
            }
        for index, event in enumerate(events):
            changes.extend(
                _reprocess_event(
                    ctx, delivery.id, index, event, outcome=outcomes.get(index), dry_run=dry_run
                )
            )
        if not dry_run and len(outcomes) < len(events):
            with ctx.session_factory() as session, session.begin():
                finish_delivery(session, delivery.id, event_count=len(events))
    return changes


def _reprocess_event(
    ctx: IngestContext,
    delivery_id: str,
    index: int,
    event: Any,
    *,
    outcome: str | None,
    dry_run: bool,
) -> list[Change]:
    kind = parsing.event_kind(event)
    try:
        parsed: parsing.ParsedEmail | parsing.ParsedEvent = (
            parsing.parse_inbound(event, ctx.email_limits)
            if kind == "inbound"
            else parsing.parse_event(event)
        )
    except INTERRUPTS:
        raise
    except Exception as exc:
        if outcome is not None and outcome != EventOutcome.FAILED:
            # Never delete a stored result because today's parser refuses its input.
            reason = str(exc) if isinstance(exc, parsing.PermanentEventError) else type(exc)
            return [Change(delivery_id, index, "now_fails", f"({reason}); stored row kept")]
        return []

    changes: list[Change] = []
    # An email's rows (its derivations included) are computed once, compared, then written.
    rows = None
    if isinstance(parsed, parsing.ParsedEmail):
        # The sender is verified and the attachments scanned again, as ingest does.
        rows = email_rows(parsed, *io_columns(ctx, parsed))
    with ctx.session_factory() as session:
        if rows is not None:
            # The conversation a stored parent gives, as ingest takes it (and a reply
            # stored before its parent arrived joins it now).
            rows = with_stored_conversation(session, rows)
            rows = keep_stored_verdicts(session, rows)
            change = _compare_email(session, delivery_id, index, rows)
        else:
            assert isinstance(parsed, parsing.ParsedEvent)
            change = _compare_event(session, delivery_id, index, parsed)
    if change:
        changes.append(change)
    if outcome is None or outcome == EventOutcome.FAILED:
        changes.append(Change(delivery_id, index, "resolve", f"{kind} gets a result"))
    if changes and not dry_run:
        if isinstance(parsed, parsing.ParsedEmail):
            assert rows is not None
            _apply_email(ctx, delivery_id, index, parsed, rows)
        else:
            process_event(ctx, delivery_id, index, event, replaying=True)
    return changes


def keep_stored_verdicts(session: Session, rows: EmailRows) -> EmailRows:
    """Keep the stored sender-trust verdict and scan results where this run has none
    (the check off) or a worse one (DNS or clamd not answering now): a reprocess while a
    service is down must not turn a quarantined attachment servable, nor a verdict into
    ``unknown``."""
    row = session.scalars(select(Email).where(Email.dedup_key == rows.dedup_key)).one_or_none()
    if row is None:
        return rows
    values = dict(rows.values)
    if values.get("sender_trust") in (None, "unknown") and row.sender_trust is not None:
        values["sender_trust"] = row.sender_trust
        values["sender_trust_reasons"] = row.sender_trust_reasons
    stored = {(a.position, a.sha256): a for a in row.attachments}
    attachments = []
    for computed in rows.attachments:
        wanted = dict(computed)
        old = stored.get((wanted["position"], wanted["sha256"]))
        if (
            old is not None
            and old.scan_status is not None
            and wanted.get("scan_status") in (None, UNSCANNED)
        ):
            wanted["scan_status"], wanted["scan_signature"] = old.scan_status, old.scan_signature
        attachments.append(wanted)
    return replace(rows, values=values, attachments=attachments)


def _differences(row: Any, values: dict[str, Any]) -> list[str]:
    return sorted(
        name
        for name, value in values.items()
        if name not in _BOOKKEEPING and getattr(row, name) != value
    )


def _compare_email(
    session: Session, delivery_id: str, index: int, rows: EmailRows
) -> Change | None:
    row = session.scalars(select(Email).where(Email.dedup_key == rows.dedup_key)).one_or_none()
    if row is None:
        message_id = rows.values.get("message_id") or ""
        return Change(delivery_id, index, "create", f"email {message_id}".strip())
    changed = _differences(row, rows.values)
    wanted = rows.attachments
    stored = [
        {name: getattr(a, name) for name in values}
        for a, values in zip(row.attachments, wanted, strict=False)
    ]
    if len(row.attachments) != len(wanted) or stored != wanted:
        changed.append("attachments")
    if not changed:
        return None
    return Change(delivery_id, index, "update", f"email {row.id}: " + ", ".join(changed))


def _compare_event(
    session: Session, delivery_id: str, index: int, event: parsing.ParsedEvent
) -> Change | None:
    row = session.scalars(select(Event).where(Event.dedup_key == event.dedup_key)).one_or_none()
    if row is None:
        return Change(delivery_id, index, "create", f"{event.kind} event")
    changed = _differences(row, event_values(event))
    if not changed:
        return None
    return Change(delivery_id, index, "update", f"event {row.id}: " + ", ".join(changed))


def _apply_email(
    ctx: IngestContext, delivery_id: str, index: int, email: parsing.ParsedEmail, rows: EmailRows
) -> None:
    store_email_objects(ctx.object_store, email, uploads=ctx.uploads)
    with ctx.session_factory() as session, session.begin():
        email_id, created = insert_email(session, rows, delivery_id, ctx.outbox)
        if created:
            count_inbound(session, email.envelope_recipient)
        else:
            replace_email(session, email_id, rows)
        record_outcome(
            session, delivery_id, index, "inbound", outcome_for(created), email_id=email_id
        )
        resolve_dead_letter(session, delivery_id, index)
    log.info("email.reprocessed", email_id=email_id, created=created)
