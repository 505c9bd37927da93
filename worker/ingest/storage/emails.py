"""Emails, their attachments and events: one statement per stored email, with its outcome,
the claims on its objects and, for a new email, its hand-off outbox row."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    LABEL_STYLE_NONE,
    BindParameter,
    Boolean,
    ColumnElement,
    Select,
    String,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    column,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by, insert
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType, TypeDecorator

from shared.models import (
    Attachment,
    DeliveryEvent,
    Email,
    Event,
    EventOutcome,
    ObjectDeletion,
)
from worker.handoff.outbox import NewDispatch, Outbox
from worker.ingest.rows import ATTACHMENT_COLUMNS, EmailRows
from worker.ingest.storage.deliveries import (
    DELIVERY_COLUMNS,
    DeliveryAttempt,
    attempt_upsert,
    constant,
    outcome_overwrite,
    record_outcome,
)

# Built once, like the delivery's statements above. The columns are the keys of the
# values executed with: every email row has the same ones (worker.ingest.rows.email_values).
_INSERT_EMAIL = (
    insert(Email)
    .on_conflict_do_nothing(index_elements=[Email.dedup_key])
    .returning(Email.id, Email.received_at)
)
_EXISTING_EMAIL = select(Email.id).where(Email.dedup_key == bindparam("dedup_key"))
_INSERT_ATTACHMENTS = insert(Attachment).returning(Attachment.position, Attachment.id)


def insert_email(
    session: Session,
    rows: EmailRows,
    delivery_id: str,
    outbox: Outbox,
    handed: list[NewDispatch] | None = None,
) -> tuple[int, bool]:
    """The email's id, and whether this call created it (False: it was already stored).

    A new email's dispatch row goes in with it (``outbox``); ``handed``: the caller hands
    it over after its commit (``worker.handoff.outbox.Outbox.record_new_email``)."""
    values = rows.values
    connection = session.connection()
    inserted = connection.execute(_INSERT_EMAIL, {**values, "delivery_id": delivery_id}).first()
    if inserted is not None:
        new_id = inserted.id
        attachments = _insert_attachments(session, new_id, rows.attachments)
        outbox.record_new_email(
            session,
            delivery_id,
            values,
            email_id=new_id,
            received_at=inserted.received_at,
            attachments=attachments,
            handed=handed,
        )
        return new_id, True
    return _existing_email_id(session, rows.dedup_key), False


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
    rows: EmailRows,
    delivery_id: str,
    index: int,
    *,
    outbox: Outbox,
    handed: list[NewDispatch] | None = None,
    attempt: DeliveryAttempt | None = None,
) -> StoredEmail:
    """Store an email brought by event ``index`` of a delivery and record that event's
    outcome (stored, or duplicate when a copy was stored before). With ``attempt``, the
    delivery's attempt (and end) is recorded too. The objects the new rows name (a new
    email's, the archive an attempt names) are claimed back from retention and erasure
    (``shared.lifecycle.objects.reclaim``). ``outbox``, ``handed``: as for
    :func:`insert_email`.

    All of it is one statement (``_store_email_statement``): each statement costs a round
    trip to PostgreSQL and SQLAlchemy's execution work, ~0.5 ms apiece on the bench
    machine, where an email's whole transaction took ~5 ms in five statements.
    """
    values = rows.values
    # Copies: the new ids are written into them below, for the hand-off's document.
    attachments = [dict(row) for row in rows.attachments]
    params: dict[str, Any] = {
        **_email_keys(values),
        "delivery_id": delivery_id,
        "event_index": index,
        "email_object_keys": rows.object_keys,
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
        existing = _existing_email_id(session, rows.dedup_key)
        record_outcome(
            session, delivery_id, index, "inbound", EventOutcome.DUPLICATE, email_id=existing
        )
        return StoredEmail(existing, EventOutcome.DUPLICATE, removed_keys)
    # The ids come in the attachments' order (see _store_email_statement).
    for row, attachment_id in zip(attachments, attachment_ids or (), strict=True):
        row.update(email_id=new_id, id=attachment_id)
    outbox.record_new_email(
        session,
        delivery_id,
        values,
        email_id=new_id,
        received_at=received_at,
        attachments=attachments,
        handed=handed,
    )
    return StoredEmail(new_id, EventOutcome.STORED, removed_keys)


class _InferredText(TypeDecorator[str]):
    """A text parameter rendered without a cast: the column it is inserted into gives its
    type (psycopg sends a str as of unknown type, for the server to infer)."""

    impl = NullType
    cache_ok = True


def _email_param(name: str, key: str) -> BindParameter[Any]:
    # Without a ``::VARCHAR`` per text column, and under a short key (``e0``, ``e1``...
    # rather than ``%(sender_trust_reasons)s``), the statement stays within the length
    # psycopg caches the parsing of (tests/worker/test_email_rows.py).
    if isinstance(Email.__table__.c[name].type, String):
        return bindparam(key, type_=_InferredText())
    return bindparam(key)


# Columns sent together as one JSON parameter and taken apart in the statement: psycopg
# keeps a statement parsed only up to 50 parameters, and these came last.
_PACKED = ("sender_trust", "sender_trust_reasons", "hygiene_flags", "charset_refused")


def _packed_value(name: str) -> ColumnElement[Any]:
    """``%(packed)s::JSONB -> 'name'`` (``->>`` for a text column, cast for a boolean)."""
    packed = bindparam("packed", type_=JSONB)
    column_type = Email.__table__.c[name].type
    if isinstance(column_type, Boolean):
        return cast(packed.op("->>")(constant(name)), Boolean)
    operator = "->>" if isinstance(column_type, String) else "->"
    return packed.op(operator)(constant(name))


def _email_keys(values: dict[str, Any]) -> dict[str, Any]:
    """An email row's values under the statement's keys (:func:`_email_param`,
    :data:`_PACKED`)."""
    keys = {
        f"e{index}": value
        for index, (name, value) in enumerate(values.items())
        if name not in _PACKED
    }
    keys["packed"] = {name: values.get(name) for name in _PACKED}
    return keys


def _recordset_type(column_type: Any) -> Any:
    """A string column as TEXT in the attachments' recordset: the INSERT casts it to the
    column's own type, and the statement stays short enough for psycopg to keep parsed."""
    return Text() if isinstance(column_type, String) else column_type


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
    ``worker.ingest.rows.email_values``) and kind of attempt.
    """
    new_email = (
        insert(Email)
        .values(
            {
                name: _packed_value(name) if name in _PACKED else _email_param(name, f"e{index}")
                for index, name in enumerate(columns)
            }
            | {"delivery_id": bindparam("delivery_id")}
        )
        .on_conflict_do_nothing(index_elements=[Email.dedup_key])
        .returning(Email.id, Email.received_at)
        .cte("new_email")
    )
    # The attachments' rows as one JSON array, turned back into typed rows: a statement
    # whose text does not depend on how many there are, with one parameter for them.
    attachment_table = Attachment.__table__
    attachment_rows = (
        func.jsonb_to_recordset(bindparam("attachments", type_=JSONB))
        .table_valued(
            *(
                column(name, _recordset_type(attachment_table.c[name].type))
                for name in ATTACHMENT_COLUMNS
            )
        )
        .render_derived(name="attachment", with_types=True)
    )
    new_attachments = (
        insert(Attachment)
        .from_select(
            ["email_id", *ATTACHMENT_COLUMNS],
            select(
                new_email.c.id,
                *(literal_column(f"attachment.{name}") for name in ATTACHMENT_COLUMNS),
            )
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
            constant("inbound"),
            constant(EventOutcome.STORED),
            new_email.c.id,
        ).set_label_style(LABEL_STYLE_NONE),
    )
    outcome = (
        outcome_insert.on_conflict_do_update(
            index_elements=[DeliveryEvent.delivery_id, DeliveryEvent.index],
            set_=outcome_overwrite(outcome_insert),
            where=DeliveryEvent.outcome == constant(EventOutcome.FAILED),
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
            name: bindparam(f"attempt_{name}") for name in DELIVERY_COLUMNS if name != "id"
        }
        delivery_values["id"] = bindparam("delivery_id")  # the delivery of the event
        # Unguarded: the guard would take this statement past the length up to which
        # psycopg keeps it parsed. A delivery whose attempt is recorded here is still
        # finished only by a guarded statement, except a single-event one, whose email,
        # outcome and end commit together; an erasure can find its email only after.
        statement = statement.add_cte(
            attempt_upsert(delivery_values, finish=finish, guarded=False).cte("delivery")
        )
    return statement


def _existing_email_id(session: Session, dedup_key: str) -> int:
    connection = session.connection()
    existing = connection.execute(_EXISTING_EMAIL, {"dedup_key": dedup_key}).scalar()
    assert existing is not None  # the conflict proves the row exists
    return int(existing)


def _insert_attachments(
    session: Session, email_id: int, attachments: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Insert the attachment rows; their values with their new ids, in order."""
    rows = [{**row, "email_id": email_id} for row in attachments]
    if not rows:
        return []
    inserted = session.connection().execute(_INSERT_ATTACHMENTS, rows).all()
    ids = dict(inserted)  # position -> id (RETURNING rows come in no promised order)
    for row in rows:
        row["id"] = ids[row["position"]]
    return rows


def replace_email(session: Session, email_id: int, rows: EmailRows) -> None:
    """Bring a stored email's row and attachment rows up to ``rows`` (reprocessing after a
    parser fix). The email keeps its id, its first delivery and its dispatches: what the
    platform was handed names the same email."""
    session.execute(update(Email).where(Email.id == email_id).values(**rows.values))
    session.execute(delete(Attachment).where(Attachment.email_id == email_id))
    _insert_attachments(session, email_id, rows.attachments)


_INSERT_EVENT = (
    insert(Event).on_conflict_do_nothing(index_elements=[Event.dedup_key]).returning(Event.id)
)
_EXISTING_EVENT = select(Event.id).where(Event.dedup_key == bindparam("dedup_key"))


def insert_event(session: Session, values: dict[str, Any], delivery_id: str) -> tuple[int, bool]:
    """Insert an event row from its column values (worker.ingest.rows.event_values): its
    id, and whether this call created it."""
    connection = session.connection()
    new_id = connection.execute(_INSERT_EVENT, {**values, "delivery_id": delivery_id}).scalar()
    if new_id is not None:
        return new_id, True
    existing = connection.execute(_EXISTING_EVENT, {"dedup_key": values["dedup_key"]}).scalar()
    assert existing is not None
    return existing, False


def outcome_for(created: bool) -> str:
    return EventOutcome.STORED if created else EventOutcome.DUPLICATE
