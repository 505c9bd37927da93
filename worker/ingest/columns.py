"""What fits in a column: the lengths of the schema's bounded columns, the bounds the
parser puts on what it extracts, and the cleaning every stored value needs. One home
for the parser (``worker.ingest.parsing``) and the writers (``worker.ingest.storage``).

The column lengths are those of ``shared.models`` (``tests/worker/test_columns.py``
checks that they agree); this module imports no database code, so the pure parser can
use it.
"""

from __future__ import annotations

from typing import Any, Final

# --- String(n) columns of shared.models -----------------------------------------------
KIND_CHARS: Final = 64  # events.kind, delivery_events.kind, dead_letters.kind
ERROR_CLASS_CHARS: Final = 128  # dead_letters.error_class
CONTENT_TYPE_CHARS: Final = 255  # attachments.content_type
MANDRILL_ID_CHARS: Final = 255  # events.mandrill_id
SPF_RESULT_CHARS: Final = 32  # emails.spf_result

# Indexed text columns (emails.message_id, envelope_recipient, from_address,
# events.recipient): PostgreSQL refuses index entries over ~2.7 kB, and no real address
# or Message-ID comes near this many characters.
INDEXED_TEXT_CHARS: Final = 512

# --- bounds of what the parser extracts -------------------------------------------------
FILENAME_CHARS: Final = 200
# RFC 5322 caps a header line at 998 characters; an id longer than that is garbage and
# would only hurt the indexes that look it up.
MESSAGE_ID_CHARS: Final = 998
# An event's kind as the parser names it (stored cut to KIND_CHARS).
EVENT_KIND_CHARS: Final = 100
# A permanent failure's reason, as stored in a dead letter.
REASON_CHARS: Final = 500


def storable_text(text: str) -> str:
    """Make a string storable: no NUL (PostgreSQL rejects it), no lone surrogates."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        return text
    try:
        # Surrogate escapes from the bytes parser stand for raw bytes: usually UTF-8.
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        # Lone surrogates from JSON "\udXXX" escapes: replace what cannot be represented.
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def without_nul(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold NUL characters; real mail sometimes does.
    Strings anywhere in lists and dicts (keys too) lose theirs; other values are kept."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(item) for item in value]
    return value


def bounded(value: str | None, limit: int = INDEXED_TEXT_CHARS) -> str | None:
    """At most ``limit`` characters (None and "" as they are)."""
    return value[:limit] if value else value
