"""What a delivery stored: emails, their attachments, tracking and sync events, and the
per-domain daily count."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models.base import Base

# The id of the writing transaction, as a number: the live feed orders rows by it and
# sends those below the oldest running transaction (api/stream/feed.py). An email's
# feed_position and an attachment's text_position (worker/text/service.py) are both it.
CURRENT_TRANSACTION_ID = "(pg_current_xact_id())::text::bigint"


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
        BigInteger, server_default=text(CURRENT_TRANSACTION_ID)
    )

    # Full-text search (api/search): kept by a trigger from the texts (migration 0013);
    # never written by the code. Deferred: only searches read it. Stored in the row,
    # not in TOAST (STORAGE MAIN, migration 0014): searches read it row after row.
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
        # The live feed's email.text_ready (api/stream/feed.py; migration 0015).
        Index(
            "ix_attachments_text_position",
            "text_position",
            postgresql_where=text("text_position IS NOT NULL"),
        ),
        # Search over attachment text (api/search/sources.py): the emails whose content's
        # text is ready, by content (migration 0014).
        Index(
            "ix_attachments_text_ready",
            "sha256",
            "email_id",
            postgresql_where=text("text_status = 'ready' AND content_removed_at IS NULL"),
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
    # The id of the transaction that gave it its final text status (worker.text.service):
    # an email's ``email.text_ready`` is at the largest of these once none is pending
    # (api/stream/feed.py). NULL: its status was final from the start, or set before 0015.
    text_position: Mapped[int | None] = mapped_column(BigInteger)

    email: Mapped[Email] = relationship(back_populates="attachments")


class AttachmentText(Base):
    """The searchable text of one attachment content (sha256) whose text is ready: the
    first characters of ``text/<sha256>.md`` and their tsvector (``simple``: a content is
    shared by emails of any language). Written by the text worker (worker/text/indexing.py),
    removed with the text object (shared/lifecycle/objects.py)."""

    __tablename__ = "attachment_texts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    search_document: Mapped[Any] = mapped_column(TSVECTOR, deferred=True)
    indexed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_attachment_texts_search", "search_document", postgresql_using="gin"),
    )


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


class DomainActivity(Base):
    """Inbound emails per UTC day and recipient domain, counted in the transaction that
    stores each new email (worker.ingest.storage.activity), for the per-domain gauge."""

    __tablename__ = "domain_activity"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    domain: Mapped[str] = mapped_column(Text, primary_key=True)
    emails: Mapped[int] = mapped_column(BigInteger)
    last_received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
