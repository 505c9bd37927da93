"""The relational schema. Alembic migrations in ``migrations/`` create it; a test keeps
the two in agreement.

Idempotency lives in unique keys: a delivery is its receiver-issued id, an event outcome
is (delivery, index in the batch), an email is ``dedup_key`` (Message-ID + sha256 of the
raw message + envelope recipient) and a tracking or sync event is the sha256 of its
canonical JSON. Replays and duplicate batches therefore meet a conflict, never a new row.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB, list[Any]: JSONB}


class DeliveryStatus:
    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"


class EventOutcome:
    STORED = "stored"  # a new email or event row
    DUPLICATE = "duplicate"  # the same email or event was already stored
    FAILED = "failed"  # could not be processed: a dead letter says why
    ERASED = "erased"  # its email or event was erased on request (kave erase)


class DeadLetterStatus:
    OPEN = "open"  # waiting for a fix and a replay, or a discard
    REPLAYED = "replayed"  # replayed successfully; the event now has a result
    DISCARDED = "discarded"  # an operator decided it needs no result


class Delivery(Base):
    """One webhook POST that the receiver accepted (answered 200)."""

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    request_id: Mapped[str] = mapped_column(String(128))
    body_sha256: Mapped[str] = mapped_column(String(64))
    body_size: Mapped[int] = mapped_column(BigInteger)
    archive_key: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.RECEIVED)
    event_count: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When a worker last started on it: reconciliation re-enqueues unfinished deliveries
    # only once this is old enough, so a delivery in retry backoff is left alone.
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when retention or an erasure removed the raw archive: the delivery can no
    # longer be reprocessed or replayed, and the audit does not look for its object.
    archive_removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archive_removed_reason: Mapped[str | None] = mapped_column(String(16))

    events: Mapped[list[DeliveryEvent]] = relationship(back_populates="delivery")

    # The deliveries list, newest first, with or without its status filter; the status
    # one also serves the unfinished-delivery gauge and reconciliation.
    __table_args__ = (
        Index("ix_deliveries_received", "received_at", "id"),
        Index("ix_deliveries_status_received", "status", "received_at", "id"),
    )


class DeliveryEvent(Base):
    """The outcome of one event of a delivery's batch, recorded exactly once."""

    __tablename__ = "delivery_events"
    __table_args__ = (UniqueConstraint("delivery_id", "index"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    email_id: Mapped[int | None] = mapped_column(ForeignKey("emails.id"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    delivery: Mapped[Delivery] = relationship(back_populates="events")


class Email(Base):
    """One inbound message for one envelope recipient."""

    __tablename__ = "emails"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str | None] = mapped_column(Text, index=True)
    raw_sha256: Mapped[str] = mapped_column(String(64))
    raw_size: Mapped[int] = mapped_column(BigInteger)
    raw_key: Mapped[str] = mapped_column(String(255), index=True)
    # Set when retention removed the raw message object (the row stays).
    raw_removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    envelope_recipient: Mapped[str | None] = mapped_column(Text)
    from_address: Mapped[str | None] = mapped_column(Text)
    from_name: Mapped[str | None] = mapped_column(Text)
    to: Mapped[list[Any]] = mapped_column(default=list)
    cc: Mapped[list[Any]] = mapped_column(default=list)
    bcc: Mapped[list[Any]] = mapped_column(default=list)
    reply_to: Mapped[list[Any]] = mapped_column(default=list)
    subject: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[Any]] = mapped_column(default=list)
    text_body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[list[Any]] = mapped_column(default=list)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    spam_score: Mapped[float | None] = mapped_column(Float)
    spam_rules: Mapped[list[Any]] = mapped_column(default=list)
    spf_result: Mapped[str | None] = mapped_column(String(32))
    spf_detail: Mapped[str | None] = mapped_column(Text)
    dkim_signed: Mapped[bool | None] = mapped_column(Boolean)
    dkim_valid: Mapped[bool | None] = mapped_column(Boolean)
    mandrill_ts: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Derived at parse time for the hand-off (worker.ingest.derive; re-derived by `kave reprocess`).
    conversation_id: Mapped[str | None] = mapped_column(Text, index=True)
    mailbox_hash: Mapped[str | None] = mapped_column(Text, index=True)
    reply_text: Mapped[str | None] = mapped_column(Text)
    forwarded_text: Mapped[str | None] = mapped_column(Text)  # a forward's forwarded message
    # Written by a machine (auto-reply, bounce, report): answering it risks a loop.
    auto_submitted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    auto_submitted_reason: Mapped[str | None] = mapped_column(String(64))
    bounced_addresses: Mapped[list[Any]] = mapped_column(
        default=list, server_default=text("'[]'::jsonb")
    )
    # Came through a mailing list or a bulk sender (a person may have written it).
    bulk: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # A text part declared a charset that is not a mail charset
    # (worker.ingest.parsing.charsets): its text was read as UTF-8 with replacement instead.
    charset_refused: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # The envelope recipient, To and Cc addresses, lower-cased (worker.ingest.rows): the
    # ``recipient`` filter's GIN index. NULL: stored before 0012, not yet backfilled.
    recipient_addresses: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    # Whether the visible From: is authenticated (worker.ingest.trust): pass, fail, none or
    # unknown (DNS did not answer); NULL for rows stored before it was computed. Its
    # evidence (DKIM, SPF, DMARC, ARC) is in sender_trust_reasons.
    sender_trust: Mapped[str | None] = mapped_column(String(8))
    sender_trust_reasons: Mapped[dict[str, Any] | None] = mapped_column()
    # Content an agent should not take at face value (worker.ingest.derive.hygiene):
    # hidden HTML text, zero-width or bidi-control characters, a text part unlike the HTML.
    hygiene_flags: Mapped[list[Any]] = mapped_column(
        default=list, server_default=text("'[]'::jsonb")
    )
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    # The id of the transaction that inserted the row: the live feed's order (api/stream).
    # NULL for rows stored before the feed existed.
    feed_position: Mapped[int | None] = mapped_column(
        BigInteger, server_default=text("(pg_current_xact_id())::text::bigint")
    )

    # Full-text search (api/search): kept by a trigger from the texts (migration 0013);
    # never written by the code. Deferred: only searches read it.
    search_document: Mapped[Any | None] = mapped_column(TSVECTOR, deferred=True)

    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="email", order_by="Attachment.position"
    )

    # The list filters of api/emails/queries.py, each newest first (migration 0012).
    __table_args__ = (
        Index("ix_emails_sender", func.lower(text("from_address")), "received_at", "id"),
        Index("ix_emails_recipient_addresses", "recipient_addresses", postgresql_using="gin"),
        Index(
            "ix_emails_subject_trgm",
            "subject",
            postgresql_using="gin",
            postgresql_ops={"subject": "gin_trgm_ops"},
        ),
        Index("ix_emails_spf", func.lower(text("spf_result::text")), "received_at", "id"),
        Index("ix_emails_spam_score", "spam_score"),
        # The live feed's order and full-text search (migration 0013).
        Index("ix_emails_feed", "feed_position", "id"),
        Index("ix_emails_search", "search_document", postgresql_using="gin"),
    )


class Attachment(Base):
    """An attachment or inline image of an email; its bytes live in the object store."""

    __tablename__ = "attachments"
    __table_args__ = (
        UniqueConstraint("email_id", "position"),
        # What the text sweep (worker.text.sweep) looks for: small, only the waiting rows.
        Index(
            "ix_attachments_text_pending",
            "sha256",
            postgresql_where=text("text_status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    object_key: Mapped[str] = mapped_column(String(255), index=True)
    content_id: Mapped[str | None] = mapped_column(Text)
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when retention removed this row's claim on the object (the row stays; the
    # object goes once no other attachment row still names it).
    content_removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The type its bytes say it is (worker.ingest.derive), and whether that contradicts
    # content_type.
    sniffed_type: Mapped[str | None] = mapped_column(String(255))
    type_mismatch: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # The malware scan (worker.ingest.scan; off unless KAVE_MALWARE_SCAN): clean,
    # quarantined (a signature matched: its bytes and text are never served), unscanned
    # (the scanner could not be reached); NULL when scanning is off.
    scan_status: Mapped[str | None] = mapped_column(String(16))
    scan_signature: Mapped[str | None] = mapped_column(String(255))
    # Its text for agents (worker/text/): ``pending``, ``ready``, ``skipped:<reason>`` or
    # ``failed``; None for rows stored before conversion existed (``kave reprocess --text``).
    # The text itself is the object ``text/<sha256>.md``, shared by every row of the same
    # bytes; these columns describe it (converted once per sha256, copied to each row).
    text_status: Mapped[str | None] = mapped_column(String(64))
    text_characters: Mapped[int | None] = mapped_column(Integer)
    text_pages: Mapped[int | None] = mapped_column(Integer)
    text_extractor: Mapped[str | None] = mapped_column(String(64))  # e.g. "kreuzberg 4.10.4"
    text_version: Mapped[int | None] = mapped_column(Integer)  # Kave's conversion version
    text_excerpt: Mapped[str | None] = mapped_column(Text)  # the first characters of the text

    email: Mapped[Email] = relationship(back_populates="attachments")


class Event(Base):
    """A tracking (message) event or a sync event; unknown kinds are kept too."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    mandrill_id: Mapped[str | None] = mapped_column(String(255), index=True)
    recipient: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column()
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    # The events list, newest first, with or without its recipient filter.
    __table_args__ = (
        Index("ix_events_created", "created_at", "id"),
        Index("ix_events_recipient_lower", func.lower(text("recipient")), "created_at", "id"),
    )


class DispatchStatus:
    PENDING = "pending"  # waiting for (another) publishing attempt
    DELIVERED = "delivered"  # the handler took it: HTTP 2xx, or the Celery task published
    DEAD = "dead"  # out of attempts: a dead letter (kind "dispatch") says why; replayable
    UNROUTED = "unrouted"  # no route matched: recorded, never retried
    # A route with ``after: text``: waits until every attachment's text status is final,
    # then becomes pending (worker.handoff.held), once.
    HELD = "held"


class Dispatch(Base):
    """The hand-off of one email to one route's handler (a transactional outbox row).

    Written in the transaction that stores the email, so a stored email always has its
    dispatch; the dispatcher publishes pending rows and records each attempt.
    ``idempotency_key`` (sha256 of the email's dedup key and the route name) is stable
    across replays: handlers drop repeats by it (it is the ``webhook-id`` header).
    """

    __tablename__ = "dispatches"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"), index=True)
    route: Mapped[str | None] = mapped_column(String(64), index=True)  # None: unrouted
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=DispatchStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_status_code: Mapped[int | None] = mapped_column(Integer)  # the handler's HTTP answer
    last_error: Mapped[str | None] = mapped_column(Text)  # an error class, never a payload
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_dispatches_due", "status", "next_attempt_at"),)


class DeadLetter(Base):
    """An event (or a whole delivery, ``event_index`` NULL) that could not be processed.

    The payload itself stays in the delivery archive; this row only says what failed and
    why, so it can be listed, fixed, replayed or discarded without reading code.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint("delivery_id", "event_index", postgresql_nulls_not_distinct=True),
        # The dead-letter list, newest first, with or without its status filter.
        Index("ix_dead_letters_first_seen", "first_seen_at", "id"),
        Index("ix_dead_letters_status_first_seen", "status", "first_seen_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    event_index: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str | None] = mapped_column(String(64), index=True)
    error_class: Mapped[str] = mapped_column(String(128), index=True)
    message: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default=DeadLetterStatus.OPEN)
    first_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class User(Base):
    """Someone who may call the management API (``kave users create NAME``), in a role
    (``shared.roles``).

    Only a bcrypt hash of the password is kept. A disabled user keeps its row (and the
    name stays taken) but can neither get a token nor use one it already has.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(128))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # What it may do (api/access): admin, operator or reader; ``kave users create --role``.
    role: Mapped[str] = mapped_column(String(16), default="operator", server_default="operator")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ApiKey(Base):
    """A bearer key for an agent (``kave keys create``): read-only, optionally limited to
    mailboxes (envelope-recipient patterns such as ``support+*@example.com``).

    Only the sha256 of the key is kept (keys are 256 random bits, so a slow hash adds
    nothing); ``prefix`` identifies it in listings. Revoked or expired keys stay, refused.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(16))
    mailboxes: Mapped[list[Any]] = mapped_column(default=list)
    rate_limit: Mapped[str | None] = mapped_column(String(32))  # None: KAVE_RATE_LIMIT_API
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ObjectDeletion(Base):
    """An object whose last row reference was deleted, waiting to be removed.

    Written in the same transaction as the row deletion (retention or erasure), so a
    crash between the rows and the objects leaves a to-do list, not an orphan: the next
    ``kave purge``, ``kave erase`` or ``kave audit --repair`` finishes it. The object is
    removed only if no row names the key again by then. Once removed, the entry stays a
    while as a tombstone (``object_deleted_at``): a worker that uploaded the same content
    just before, and commits rows naming it just after, finds it and uploads it again.
    """

    __tablename__ = "object_deletions"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    object_deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Queued by an erasure: removed by the next drain whatever the object's age (no
    # grace), since no row may keep erased content alive (shared/lifecycle/objects.py).
    without_grace: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")


class Erasure(Base):
    """The record of one erasure request, without the erased content.

    ``selector_sha256`` is the sha256 of the normalised selector (a lower-cased address,
    or ``email:<id>``): it proves what was asked for to whoever already knows it, and
    tells nobody else anything.
    """

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(String(128))
    selector_kind: Mapped[str] = mapped_column(String(16))
    selector_sha256: Mapped[str] = mapped_column(String(64), index=True)
    counts: Mapped[dict[str, Any]] = mapped_column()
    objects_done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DomainActivity(Base):
    """Inbound emails per UTC day and recipient domain, counted in the transaction that
    stores each new email (worker.ingest.storage.activity), for the per-domain gauge."""

    __tablename__ = "domain_activity"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    domain: Mapped[str] = mapped_column(Text, primary_key=True)
    emails: Mapped[int] = mapped_column(BigInteger)
    last_received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditRun(Base):
    """The counts of one ``kave audit`` run; the newest feeds the Prometheus gauge."""

    __tablename__ = "audit_runs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    finished_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    counts: Mapped[dict[str, Any]] = mapped_column()
    repaired: Mapped[dict[str, Any]] = mapped_column()
