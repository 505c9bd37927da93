"""roles, agent keys, the live feed's order and full-text search over emails

Revision ID: 0013_agent_surface
Revises: 0012_list_indexes
Create Date: 2026-12-07 16:45:00.000000

* ``users.role`` replaces ``users.is_admin`` (admins stay admins; every other user becomes
  an ``operator``, which is what they could do before).
* ``api_keys``: agent keys, hashed (``kave keys create``).
* ``emails.feed_position``: the inserting transaction's id, the commit order the live feed
  follows (api/stream). Added without a default, then given one: a volatile default in
  ``ADD COLUMN`` would rewrite the table under an exclusive lock; ``SET DEFAULT`` only
  applies to new rows and takes a moment. Older rows keep NULL (they predate the feed).
* Full-text search: ``kave_search_document(headers, subject, reply_text, text_body,
  html_body)`` is the tsvector of an email in its language (``kave_search_config``: the
  ``Content-Language`` header, else ``simple``), kept in ``emails.search_document`` by a
  BEFORE INSERT OR UPDATE trigger, with a GIN index on it. A trigger-kept column rather
  than a stored generated column: adding a stored generated column rewrites ``emails``
  under an ACCESS EXCLUSIVE lock (ingest stops for as long as that takes), while a
  nullable column without a default is added at once, the trigger covers every row
  written after this transaction, and the rows before are filled in batches of
  ``BACKFILL_BATCH`` (each its own short transaction). Rather than an expression index on
  the function: a search must re-read each candidate row's document (phrases, lossy
  bitmap pages), and re-parsing the texts each time made searches take seconds. The
  texts are cut to bounded lengths so that no email can exceed the tsvector's 1 MB limit
  (which would make its insert fail).

Both indexes on ``emails`` are built CONCURRENTLY, outside the migration's transaction.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013_agent_surface"
down_revision: str | None = "0012_list_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# ISO 639-1 primary subtags of Content-Language -> PostgreSQL 15's text-search configs.
# api/search/language.py keeps the same list (a test compares them).
_LANGUAGES = {
    "ar": "arabic", "hy": "armenian", "eu": "basque", "ca": "catalan", "da": "danish",
    "nl": "dutch", "en": "english", "fi": "finnish", "fr": "french", "de": "german",
    "el": "greek", "hi": "hindi", "hu": "hungarian", "id": "indonesian", "ga": "irish",
    "it": "italian", "lt": "lithuanian", "ne": "nepali", "nb": "norwegian",
    "nn": "norwegian", "no": "norwegian", "pt": "portuguese", "ro": "romanian",
    "ru": "russian", "sr": "serbian", "es": "spanish", "sv": "swedish", "ta": "tamil",
    "tr": "turkish", "yi": "yiddish",
}  # fmt: skip

_CASES = "\n".join(
    f"        WHEN '{code}' THEN '{config}'::regconfig" for code, config in _LANGUAGES.items()
)

_CONFIG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION kave_search_config(headers jsonb) RETURNS regconfig
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE lower(substring(btrim((
        SELECT h ->> 1 FROM jsonb_array_elements(
            CASE WHEN jsonb_typeof(headers) = 'array' THEN headers ELSE '[]'::jsonb END
        ) AS h
        WHERE jsonb_typeof(h) = 'array' AND lower(h ->> 0) = 'content-language'
        LIMIT 1
    )) FROM '^([A-Za-z]{{2,3}})'))
{_CASES}
        ELSE 'simple'::regconfig
    END
$$
"""

_DOCUMENT_FUNCTION = """
CREATE OR REPLACE FUNCTION kave_search_document(
    headers jsonb, subject text, reply_text text, text_body text, html_body text
) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT setweight(to_tsvector(c, left(coalesce(subject, ''), 1000)), 'A')
        || setweight(to_tsvector(c, left(coalesce(reply_text, ''), 20000)), 'B')
        || setweight(to_tsvector(c, coalesce(
               left(text_body, 100000),
               regexp_replace(left(coalesce(html_body, ''), 100000), '<[^>]*>', ' ', 'g')
           )), 'C')
    FROM (SELECT kave_search_config(headers) AS c) AS config
$$
"""

_TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION kave_emails_search_document() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_document := kave_search_document(
        NEW.headers, NEW.subject, NEW.reply_text, NEW.text_body, NEW.html_body
    );
    RETURN NEW;
END
$$
"""

_TRIGGER = """
CREATE TRIGGER emails_search_document
BEFORE INSERT OR UPDATE OF headers, subject, reply_text, text_body, html_body ON emails
FOR EACH ROW EXECUTE FUNCTION kave_emails_search_document()
"""

BACKFILL_BATCH = 2000
_BACKFILL = sa.text(
    "UPDATE emails SET search_document = "
    "kave_search_document(headers, subject, reply_text, text_body, html_body) "
    "WHERE id IN (SELECT id FROM emails WHERE search_document IS NULL "
    "ORDER BY id LIMIT :batch)"
)

_SEARCH_INDEX = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_emails_search ON emails "
    "USING gin (search_document)"
)
_FEED_INDEX = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_emails_feed ON emails (feed_position, id)"
)


def _drop_if_invalid(name: str) -> None:
    # A concurrent build that failed (or was cancelled) leaves an INVALID index behind,
    # which IF NOT EXISTS would then keep: drop it so the build runs again.
    invalid = op.get_bind().execute(
        sa.text(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name AND NOT i.indisvalid"
        ),
        {"name": name},
    ).first()
    if invalid is not None:
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("role", sa.String(length=16), server_default="operator", nullable=False),
    )
    op.execute("UPDATE users SET role = 'admin' WHERE is_admin")
    op.drop_column("users", "is_admin")
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("mailboxes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("rate_limit", sa.String(length=32), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_api_keys_key_sha256")),
    )
    op.add_column("emails", sa.Column("feed_position", sa.BigInteger(), nullable=True))
    op.alter_column(
        "emails",
        "feed_position",
        server_default=sa.text("(pg_current_xact_id())::text::bigint"),
    )
    op.execute(_CONFIG_FUNCTION)
    op.execute(_DOCUMENT_FUNCTION)
    op.add_column("emails", sa.Column("search_document", postgresql.TSVECTOR(), nullable=True))
    op.execute(_TRIGGER_FUNCTION)
    op.execute(_TRIGGER)
    with op.get_context().autocommit_block():
        # Rows stored before the trigger, a batch per transaction (row locks held briefly).
        while op.get_bind().execute(_BACKFILL, {"batch": BACKFILL_BATCH}).rowcount:
            pass
        for name, build in (("ix_emails_feed", _FEED_INDEX), ("ix_emails_search", _SEARCH_INDEX)):
            _drop_if_invalid(name)
            op.execute(build)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_emails_search")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_emails_feed")
    op.execute("DROP TRIGGER IF EXISTS emails_search_document ON emails")
    op.execute("DROP FUNCTION IF EXISTS kave_emails_search_document()")
    op.drop_column("emails", "search_document")
    op.execute("DROP FUNCTION IF EXISTS kave_search_document(jsonb, text, text, text, text)")
    op.execute("DROP FUNCTION IF EXISTS kave_search_config(jsonb)")
    op.drop_column("emails", "feed_position")
    op.drop_table("api_keys")
    op.add_column(
        "users", sa.Column("is_admin", sa.Boolean(), server_default="false", nullable=False)
    )
    op.execute("UPDATE users SET is_admin = true WHERE role = 'admin'")
    op.drop_column("users", "role")
