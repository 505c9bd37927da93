"""Writing parse results: objects first, then rows, each write idempotent.

Objects are written before the rows that point at them, so a committed row never names
a missing object; object keys are content-addressed, so writing them again is harmless.
Rows are inserted with ``ON CONFLICT DO NOTHING`` on their natural keys, so a replayed
delivery or a second copy of an email finds its row instead of adding one.
"""

from __future__ import annotations

import json
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    LABEL_STYLE_NONE,
    ColumnElement,
    Select,
    and_,
    any_,
    bindparam,
    column,
    delete,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, Insert, aggregate_order_by, insert
from sqlalchemy.orm import Session

from shared.contract import Envelope
from shared.models import (
    Attachment,
    DeadLetter,
    DeadLetterStatus,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    Email,
    Event,
    EventOutcome,
    ObjectDeletion,
)
from shared.objectstore import ObjectStore
from worker import derive, outbox, webhook_document
from worker.columns import (
    CONTENT_TYPE_CHARS,
    ERROR_CLASS_CHARS,
    KIND_CHARS,
    MANDRILL_ID_CHARS,
    SPF_RESULT_CHARS,
    bounded,
    without_nul,
)
from worker.handoff_inline import NewDispatch
from worker.parsing import Address, ParsedEmail, ParsedEvent
from worker.pending_puts import PendingPuts


def raw_message_key(sha256: str) -> str:
    return f"messages/{sha256[:2]}/{sha256}.eml"


def attachment_key(sha256: str) -> str:
    return f"attachments/{sha256[:2]}/{sha256}"


def _addresses(addresses: tuple[Address, ...]) -> list[dict[str, str | None]]:
    return [{"name": a.name, "address": a.address} for a in addresses]


def email_objects(email: ParsedEmail) -> dict[str, tuple[bytes, str]]:
    """The objects of an email by key: its raw message and each distinct attachment."""
    objects: dict[str, tuple[bytes, str]] = {
        raw_message_key(email.raw_sha256): (email.raw, "message/rfc822")
    }
    for attachment in email.attachments:
        objects.setdefault(
            attachment_key(attachment.sha256), (attachment.content, attachment.content_type)
        )
    return objects


def store_email_objects(
    store: ObjectStore, email: ParsedEmail, *, uploads: Executor | None = None
) -> None:
    """Upload the raw message and each attachment; returns once every one is stored
    (see :func:`start_email_objects`)."""
    start_email_objects(store, email, uploads=uploads).wait()


def start_email_objects(
    store: ObjectStore, email: ParsedEmail, *, uploads: Executor | None = None
) -> PendingPuts:
    """Start uploading the raw message and each attachment.

    Keys are content-addressed: each distinct content is uploaded once (two attachments
    with the same bytes are one object), and uploading it again on a redelivery stores
    the same bytes. With ``uploads`` (the process's upload threads: boto3 clients are
    thread-safe) the objects are put at once and this returns while they are under way,
    else they are put here, one after another. The caller commits the rows that name
    them only after :meth:`PendingPuts.wait` returned, so a committed row never names a
    missing object.
    """
    objects = email_objects(email)
    if uploads is None:
        for key, (data, content_type) in objects.items():
            store.put(key, data, content_type)
        return PendingPuts()
    return PendingPuts(
        [
            uploads.submit(store.put, key, data, content_type)
            for key, (data, content_type) in objects.items()
        ]
    )


# --- deliveries ---------------------------------------------------------------------

# The statements of an email's transaction are built once and run on the session's
# connection: SQLAlchemy memoises a statement's cache key on the object, so a statement
# reused with new parameters skips its construction, the coercion of each value and its
# key (~1 ms per statement on this machine), and the connection skips the ORM's
# bulk-insert path (see also worker.outbox).
_DELIVERY_COLUMNS = (
    "id",
    "received_at",
    "request_id",
    "body_sha256",
    "body_size",
    "archive_key",
    "status",
    "event_count",
    "handled_at",
)
_DELIVERY_VALUES: dict[str, Any] = {name: bindparam(name) for name in _DELIVERY_COLUMNS}
_ENSURE_DELIVERY = (
    insert(Delivery)
    .values(**_DELIVERY_VALUES, attempts=0)
    .on_conflict_do_nothing(index_elements=[Delivery.id])
)


def _constant(value: str | int) -> ColumnElement[Any]:
    """A constant written into a statement's text, not sent as a parameter: psycopg
    caches the parsing of a statement only up to 50 parameters (and 4,096 characters),
    which the statement of an email's rows keeps within (tests/worker/test_email_rows.py).
    Only Kave's own constants (words and numbers) go here."""
    if isinstance(value, int):
        return literal_column(str(int(value)))
    if not value.replace("_", "").isalnum():
        raise ValueError(f"not a constant word: {value!r}")
    return literal_column(f"'{value}'")


def _attempt_upsert(values: dict[str, Any], *, finish: bool) -> Insert:
    """Record an attempt at a delivery, creating its row on the first one; with
    ``finish``, also its end (a single-event delivery records both in one statement)."""
    one = _constant(1)
    statement = insert(Delivery).values(**values, attempts=one, last_attempt_at=func.now())
    counted: dict[str, Any] = {"attempts": Delivery.attempts + one, "last_attempt_at": func.now()}
    if finish:
        counted.update(
            status=statement.excluded.status,
            event_count=statement.excluded.event_count,
            error=null(),
            handled_at=statement.excluded.handled_at,
        )
    return statement.on_conflict_do_update(index_elements=[Delivery.id], set_=counted)


_RECORD_ATTEMPT = _attempt_upsert(_DELIVERY_VALUES, finish=False)
_RECORD_ATTEMPT_AND_FINISH = _attempt_upsert(_DELIVERY_VALUES, finish=True)
_FINISH_DELIVERY = (
    update(Delivery)
    .where(Delivery.id == bindparam("delivery_id"))
    .values(
        status=bindparam("status"),
        event_count=bindparam("event_count"),
        error=bindparam("error"),
        handled_at=bindparam("handled_at"),
    )
)
_FINISHED_INDEXES = select(DeliveryEvent.index).where(
    DeliveryEvent.delivery_id == bindparam("delivery_id")
)


def _delivery_row(envelope: Envelope, archive_key: str) -> dict[str, Any]:
    return {
        "id": envelope.delivery_id,
        "received_at": datetime.fromisoformat(envelope.received_at),
        "request_id": envelope.request_id,
        "body_sha256": envelope.body_sha256,
        "body_size": envelope.body_size,
        "archive_key": archive_key,
        "status": DeliveryStatus.RECEIVED,
        "event_count": None,
        "handled_at": None,
    }


def ensure_delivery(session: Session, envelope: Envelope, archive_key: str) -> None:
    """The delivery row exists (without counting an attempt)."""
    session.connection().execute(_ENSURE_DELIVERY, _delivery_row(envelope, archive_key))


@dataclass(frozen=True)
class DeliveryAttempt:
    """An attempt at a delivery to record (creating its row on the first one), and its
    end (processed, with that many events) when ``finish_with_events`` is set."""

    envelope: Envelope
    archive_key: str
    finish_with_events: int | None = None

    def row(self) -> dict[str, Any]:
        row = _delivery_row(self.envelope, self.archive_key)
        if self.finish_with_events is not None:
            row.update(
                status=DeliveryStatus.PROCESSED,
                event_count=self.finish_with_events,
                handled_at=datetime.now(UTC),
            )
        return row


def record_delivery(
    session: Session, envelope: Envelope, archive_key: str, *, finish_with_events: int | None = None
) -> None:
    """Record an attempt at the delivery, creating its row on the first one; with
    ``finish_with_events``, also its end (processed, with that many events)."""
    attempt = DeliveryAttempt(envelope, archive_key, finish_with_events)
    statement = _RECORD_ATTEMPT if finish_with_events is None else _RECORD_ATTEMPT_AND_FINISH
    session.connection().execute(statement, attempt.row())


def finished_indexes(session: Session, delivery_id: str) -> set[int]:
    rows = session.connection().execute(_FINISHED_INDEXES, {"delivery_id": delivery_id})
    return set(rows.scalars())


def finish_delivery(
    session: Session, delivery_id: str, *, event_count: int | None, error: str | None = None
) -> None:
    session.connection().execute(
        _FINISH_DELIVERY,
        {
            "delivery_id": delivery_id,
            "status": DeliveryStatus.FAILED if error else DeliveryStatus.PROCESSED,
            "event_count": event_count,
            "error": without_nul(error),
            "handled_at": datetime.now(UTC),
        },
    )


_INSERT_OUTCOME = insert(DeliveryEvent).values(
    delivery_id=bindparam("delivery_id"),
    index=bindparam("index"),
    kind=bindparam("kind"),
    outcome=bindparam("outcome"),
    email_id=bindparam("email_id"),
    event_id=bindparam("event_id"),
    error=bindparam("error"),
)


def _outcome_overwrite(statement: Insert) -> dict[str, Any]:
    """What a new outcome overwrites of a recorded one: only a failure's (the ``where``
    of each outcome upsert), since a replay may turn a failure into a result and nothing
    ever overwrites a result."""
    return {
        "outcome": statement.excluded.outcome,
        "email_id": statement.excluded.email_id,
        "event_id": statement.excluded.event_id,
        "error": statement.excluded.error,
    }


_RECORD_OUTCOME = _INSERT_OUTCOME.on_conflict_do_update(
    index_elements=[DeliveryEvent.delivery_id, DeliveryEvent.index],
    set_=_outcome_overwrite(_INSERT_OUTCOME),
    where=DeliveryEvent.outcome == EventOutcome.FAILED,
)


def record_outcome(
    session: Session,
    delivery_id: str,
    index: int,
    kind: str,
    outcome: str,
    *,
    email_id: int | None = None,
    event_id: int | None = None,
    error: str | None = None,
) -> None:
    session.connection().execute(
        _RECORD_OUTCOME,
        {
            "delivery_id": delivery_id,
            "index": index,
            "kind": without_nul(kind)[:KIND_CHARS],
            "outcome": outcome,
            "email_id": email_id,
            "event_id": event_id,
            "error": without_nul(error),
        },
    )


# --- dead letters -------------------------------------------------------------------


def record_dead_letter(
    session: Session,
    delivery_id: str,
    event_index: int | None,
    *,
    kind: str | None,
    error_class: str,
    message: str,
    traceback: str | None,
) -> None:
    """Open (or re-open, counting the attempt) the dead letter of an event or delivery."""
    values = {
        "error_class": error_class[:ERROR_CLASS_CHARS],
        "message": without_nul(message),
        "traceback": without_nul(traceback),
        "kind": without_nul(kind)[:KIND_CHARS] if kind else None,
    }
    session.execute(
        insert(DeadLetter)
        .values(delivery_id=delivery_id, event_index=event_index, attempts=1, **values)
        .on_conflict_do_update(
            constraint="uq_dead_letters_delivery_id",
            set_={
                **values,
                "attempts": DeadLetter.attempts + 1,
                "last_seen_at": func.now(),
                "status": DeadLetterStatus.OPEN,
                "resolved_at": None,
            },
        )
    )


def resolve_dead_letter(session: Session, delivery_id: str, event_index: int | None) -> None:
    """The event (or delivery) now has a result: its open dead letter is replayed."""
    index_matches = (
        DeadLetter.event_index.is_(None)
        if event_index is None
        else DeadLetter.event_index == event_index
    )
    session.execute(
        update(DeadLetter)
        .where(
            DeadLetter.delivery_id == delivery_id,
            index_matches,
            DeadLetter.status == DeadLetterStatus.OPEN,
        )
        .values(status=DeadLetterStatus.REPLAYED, resolved_at=func.now())
    )


# --- emails and events --------------------------------------------------------------


def email_values(email: ParsedEmail) -> dict[str, Any]:
    """The column values of an email row (without the delivery that first brought it)."""
    values: dict[str, Any] = without_nul(
        {
            "dedup_key": email.dedup_key,
            "message_id": bounded(email.message_id),
            "raw_sha256": email.raw_sha256,
            "raw_size": len(email.raw),
            "raw_key": raw_message_key(email.raw_sha256),
            "envelope_recipient": bounded(email.envelope_recipient),
            "from_address": bounded(email.from_address),
            "from_name": email.from_name,
            "to": _addresses(email.to),
            "cc": _addresses(email.cc),
            "bcc": _addresses(email.bcc),
            "reply_to": _addresses(email.reply_to),
            "subject": email.subject,
            "in_reply_to": email.in_reply_to,
            "references": list(email.references),
            "text_body": email.text_body,
            "html_body": email.html_body,
            "headers": [list(pair) for pair in email.headers],
            "tags": list(email.tags),
            "spam_score": email.spam_score,
            "spam_rules": [
                {"name": r.name, "score": r.score, "description": r.description}
                for r in email.spam_rules
            ],
            "spf_result": email.spf_result[:SPF_RESULT_CHARS] if email.spf_result else None,
            "spf_detail": email.spf_detail,
            "dkim_signed": email.dkim_signed,
            "dkim_valid": email.dkim_valid,
            "charset_refused": email.charset_refused,
        }
    )
    # datetimes are not touched by without_nul; add them after.
    values["sent_at"] = email.sent_at
    values["mandrill_ts"] = email.mandrill_ts
    # Hand-off hook (issue 10): the derived fields (worker.derive) are columns of the same
    # row, so they are written with the email and recomputed by `kave reprocess`.
    values.update(without_nul(derive.email_columns(email)))
    return values


def attachment_values(email: ParsedEmail) -> list[dict[str, Any]]:
    """The attachment rows of an email, in order (without the email id)."""
    return [
        without_nul(
            {
                "position": position,
                "filename": a.filename,
                "content_type": a.content_type[:CONTENT_TYPE_CHARS],
                "size": a.size,
                "sha256": a.sha256,
                "object_key": attachment_key(a.sha256),
                "content_id": a.content_id,
                "inline": a.inline,
                # Hand-off hook (issue 10): sniffed type and type_mismatch (worker.derive).
                **derive.attachment_columns(a),
            }
        )
        for position, a in enumerate(email.attachments)
    ]


# Built once, like the delivery's statements above. The columns are the keys of the
# values executed with: every email row has the same ones (email_values).
_INSERT_EMAIL = (
    insert(Email)
    .on_conflict_do_nothing(index_elements=[Email.dedup_key])
    .returning(Email.id, Email.received_at)
)
_EXISTING_EMAIL = select(Email.id).where(Email.dedup_key == bindparam("dedup_key"))
_INSERT_ATTACHMENTS = insert(Attachment).returning(Attachment.position, Attachment.id)

# The columns attachment_values gives (tests/worker/test_email_rows.py checks it).
ATTACHMENT_COLUMNS = (
    "position",
    "filename",
    "content_type",
    "size",
    "sha256",
    "object_key",
    "content_id",
    "inline",
    "sniffed_type",
    "type_mismatch",
)


def insert_email(
    session: Session,
    email: ParsedEmail,
    delivery_id: str,
    handed: list[NewDispatch] | None = None,
) -> tuple[int, bool]:
    """The email's id, and whether this call created it (False: it was already stored).

    ``handed``: the caller hands the new email's dispatch over after its commit
    (``worker.outbox.record_dispatch``)."""
    values = email_values(email)
    connection = session.connection()
    inserted = connection.execute(_INSERT_EMAIL, {**values, "delivery_id": delivery_id}).first()
    if inserted is not None:
        new_id = inserted.id
        attachments = _insert_attachments(session, new_id, email)
        _record_new_email_dispatch(
            session,
            delivery_id,
            values,
            email_id=new_id,
            received_at=inserted.received_at,
            attachments=attachments,
            handed=handed,
        )
        return new_id, True
    return _existing_email_id(session, email), False


@dataclass(frozen=True)
class StoredEmail:
    """What :func:`store_email` wrote: the email's id, the event's outcome, and the keys
    among the objects it claimed whose objects a drain removed meanwhile (to be put back
    before the commit, or the attempt retried for an archive)."""

    email_id: int
    outcome: str
    removed_keys: tuple[str, ...]


def store_email(
    session: Session,
    email: ParsedEmail,
    delivery_id: str,
    index: int,
    handed: list[NewDispatch] | None = None,
    *,
    attempt: DeliveryAttempt | None = None,
) -> StoredEmail:
    """Store an email brought by event ``index`` of a delivery and record that event's
    outcome (stored, or duplicate when a copy was stored before). With ``attempt``, the
    delivery's attempt (and end) is recorded too. The objects the new rows name (a new
    email's, the archive an attempt names) are claimed back from retention and erasure
    (``shared.lifecycle.objects.reclaim``). ``handed``: as for :func:`insert_email`.

    All of it is one statement (``_store_email_statement``): each statement costs a round
    trip to PostgreSQL and SQLAlchemy's execution work, ~0.5 ms apiece on the bench
    machine, where an email's whole transaction took ~5 ms in five statements.
    """
    values = email_values(email)
    attachments = attachment_values(email)
    params: dict[str, Any] = {
        **values,
        "delivery_id": delivery_id,
        "event_index": index,
        "email_object_keys": sorted(email_objects(email)),
        "archive_keys": [attempt.archive_key] if attempt is not None else [],
        "attachments": attachments,
    }
    if attempt is not None:
        row = attempt.row()
        if row.pop("id") != delivery_id:
            raise ValueError("the attempt is at another delivery than the event's")
        params.update({f"attempt_{name}": value for name, value in row.items()})
    finish = attempt is not None and attempt.finish_with_events is not None
    statement = _store_email_statement(tuple(values), attempt is not None, finish)
    new_id, received_at, attachment_ids, removed = (
        session.connection().execute(statement, params).one()
    )
    removed_keys = tuple(removed or ())
    if new_id is None:
        # The email was stored before: only the attempt and the claims were written.
        existing = _existing_email_id(session, email)
        record_outcome(
            session, delivery_id, index, "inbound", EventOutcome.DUPLICATE, email_id=existing
        )
        return StoredEmail(existing, EventOutcome.DUPLICATE, removed_keys)
    # The ids come in the attachments' order (see _store_email_statement).
    for row, attachment_id in zip(attachments, attachment_ids or (), strict=True):
        row.update(email_id=new_id, id=attachment_id)
    _record_new_email_dispatch(
        session,
        delivery_id,
        values,
        email_id=new_id,
        received_at=received_at,
        attachments=attachments,
        handed=handed,
    )
    return StoredEmail(new_id, EventOutcome.STORED, removed_keys)


@cache
def _store_email_statement(
    columns: tuple[str, ...], record_attempt: bool, finish: bool
) -> Select[Any]:
    """``WITH [delivery AS (INSERT INTO deliveries ... ON CONFLICT DO UPDATE ...),]
    new_email AS (INSERT INTO emails ... ON CONFLICT DO NOTHING RETURNING ...),
    new_attachments AS (INSERT INTO attachments SELECT ... FROM new_email, unnest(...)),
    outcome AS (INSERT INTO delivery_events SELECT ... FROM new_email ...),
    reclaimed AS (DELETE FROM object_deletions ... RETURNING ...)
    SELECT <the new email's id>, <its received_at>, <its attachments' ids>,
    <the claimed keys whose objects were removed>``: always one row.

    When the email exists already, ``new_email`` is empty, so no email, attachment or
    outcome row is inserted and its objects are not claimed (the row that names them
    did that). Every part sees the rows of the others only through RETURNING, and the
    foreign keys (to the delivery, to the new email) are checked at the statement's end,
    when those rows are there. Built once per column set (every email has the same ones:
    ``email_values``) and kind of attempt.
    """
    new_email = (
        insert(Email)
        .values({name: bindparam(name) for name in (*columns, "delivery_id")})
        .on_conflict_do_nothing(index_elements=[Email.dedup_key])
        .returning(Email.id, Email.received_at)
        .cte("new_email")
    )
    # The attachments' rows as one JSON array, turned back into typed rows: a statement
    # whose text does not depend on how many there are, with one parameter for them.
    attachment_table = Attachment.__table__
    attachment_rows = (
        func.jsonb_to_recordset(bindparam("attachments", type_=JSONB))
        .table_valued(*(column(name, attachment_table.c[name].type) for name in ATTACHMENT_COLUMNS))
        .render_derived(name="attachment", with_types=True)
    )
    new_attachments = (
        insert(Attachment)
        .from_select(
            ["email_id", *ATTACHMENT_COLUMNS],
            select(new_email.c.id, *(attachment_rows.c[name] for name in ATTACHMENT_COLUMNS))
            .select_from(new_email)
            .join(attachment_rows, true())
            .set_label_style(LABEL_STYLE_NONE),
        )
        .returning(Attachment.position, Attachment.id)
        .cte("new_attachments")
    )
    outcome_insert = insert(DeliveryEvent).from_select(
        ["delivery_id", "index", "kind", "outcome", "email_id"],
        select(
            bindparam("delivery_id", type_=DeliveryEvent.delivery_id.type),
            bindparam("event_index", type_=DeliveryEvent.index.type),
            _constant("inbound"),
            _constant(EventOutcome.STORED),
            new_email.c.id,
        ).set_label_style(LABEL_STYLE_NONE),
    )
    outcome = (
        outcome_insert.on_conflict_do_update(
            index_elements=[DeliveryEvent.delivery_id, DeliveryEvent.index],
            set_=_outcome_overwrite(outcome_insert),
            where=DeliveryEvent.outcome == _constant(EventOutcome.FAILED),
        )
        .returning(DeliveryEvent.index)
        .cte("outcome")
    )
    key_type = ARRAY(ObjectDeletion.key.type)
    reclaimed = (
        delete(ObjectDeletion)
        .where(
            or_(
                ObjectDeletion.key == any_(bindparam("archive_keys", type_=key_type)),
                and_(
                    ObjectDeletion.key == any_(bindparam("email_object_keys", type_=key_type)),
                    exists(select(new_email.c.id)),
                ),
            )
        )
        .returning(ObjectDeletion.key, ObjectDeletion.object_deleted_at)
        .cte("reclaimed")
    )
    attachment_ids = select(
        func.array_agg(aggregate_order_by(new_attachments.c.id, new_attachments.c.position))
    ).scalar_subquery()
    removed_keys = (
        select(func.array_agg(reclaimed.c.key))
        .where(reclaimed.c.object_deleted_at.is_not(None))
        .scalar_subquery()
    )
    statement = select(
        select(new_email.c.id).scalar_subquery(),
        select(new_email.c.received_at).scalar_subquery(),
        attachment_ids,
        removed_keys,
    ).add_cte(outcome)
    if record_attempt:
        # Its columns under names of their own: emails have columns of the same names.
        delivery_values: dict[str, Any] = {
            name: bindparam(f"attempt_{name}") for name in _DELIVERY_COLUMNS if name != "id"
        }
        delivery_values["id"] = bindparam("delivery_id")  # the delivery of the event
        statement = statement.add_cte(
            _attempt_upsert(delivery_values, finish=finish).cte("delivery")
        )
    return statement


def _existing_email_id(session: Session, email: ParsedEmail) -> int:
    connection = session.connection()
    existing = connection.execute(_EXISTING_EMAIL, {"dedup_key": email.dedup_key}).scalar()
    assert existing is not None  # the conflict proves the row exists
    return int(existing)


def _record_new_email_dispatch(
    session: Session,
    delivery_id: str,
    values: dict[str, Any],
    *,
    email_id: int,
    received_at: datetime,
    attachments: list[dict[str, Any]],
    handed: list[NewDispatch] | None,
) -> None:
    def fields() -> dict[str, Any]:
        # An inline HTTP hand-off's body, from what was just inserted.
        row = {**values, "id": email_id, "received_at": received_at}
        return webhook_document.email_fields(row, attachments)

    # Hand-off hook (issue 10): the outbox row commits with the email (worker.outbox).
    outbox.record_dispatch(session, email_id, delivery_id, values, handed=handed, fields=fields)


def _insert_attachments(
    session: Session, email_id: int, email: ParsedEmail
) -> list[dict[str, Any]]:
    """Insert the attachment rows; their values with their new ids, in order."""
    rows = [{**row, "email_id": email_id} for row in attachment_values(email)]
    if not rows:
        return []
    inserted = session.connection().execute(_INSERT_ATTACHMENTS, rows).all()
    ids = dict(inserted)  # position -> id (RETURNING rows come in no promised order)
    for row in rows:
        row["id"] = ids[row["position"]]
    return rows


def event_values(event: ParsedEvent) -> dict[str, Any]:
    """The column values of an event row (without the delivery that first brought it)."""
    return {
        "dedup_key": event.dedup_key,
        "kind": without_nul(event.kind)[:KIND_CHARS],
        "occurred_at": event.occurred_at,
        "mandrill_id": without_nul(event.mandrill_id)[:MANDRILL_ID_CHARS]
        if event.mandrill_id
        else None,
        "recipient": bounded(without_nul(event.recipient)),
        # Round-trip through JSON so that the stored document is exactly JSON (no tuples).
        "payload": without_nul(json.loads(json.dumps(event.payload))),
    }


_INSERT_EVENT = (
    insert(Event).on_conflict_do_nothing(index_elements=[Event.dedup_key]).returning(Event.id)
)
_EXISTING_EVENT = select(Event.id).where(Event.dedup_key == bindparam("dedup_key"))


def insert_event(session: Session, event: ParsedEvent, delivery_id: str) -> tuple[int, bool]:
    connection = session.connection()
    new_id = connection.execute(
        _INSERT_EVENT, {**event_values(event), "delivery_id": delivery_id}
    ).scalar()
    if new_id is not None:
        return new_id, True
    existing = connection.execute(_EXISTING_EVENT, {"dedup_key": event.dedup_key}).scalar()
    assert existing is not None
    return existing, False


def outcome_for(created: bool) -> str:
    return EventOutcome.STORED if created else EventOutcome.DUPLICATE
