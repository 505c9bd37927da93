"""Pure parsing of Mandrill webhook events into frozen dataclasses.

Role: turn one decoded event (an element of the ``mandrill_events`` JSON array) into what the
worker stores: :class:`ParsedEmail` for inbound mail, :class:`ParsedEvent` for tracking events,
sync events and kinds we do not know yet. This package does no I/O (no database, object
store, queue or network; an import-linter contract keeps it so: its modules import the
standard library, each other, ``worker.ingest.columns`` and ``worker.interrupts``, nothing
more), which makes every function deterministic: the same event always gives the same
result or the same :class:`PermanentEventError`, so callers can dead-letter that error
without retrying.

Principles, from what Mandrill actually sends:

- ``raw_msg`` is the source of truth for what is inside the message (addresses, subject, date,
  ids, headers). Mandrill's convenience fields are fallbacks only: it mis-splits ``to``, and in
  the fixtures its fields sometimes disagree with ``raw_msg``.
- Attachments come from Mandrill's ``attachments`` and ``images`` first, then from every MIME
  part Mandrill did not deliver, so nothing the sender attached is lost.
- One malformed header, verdict or tag never fails an email. Only an event whose shape makes the
  email itself unrecoverable raises :class:`PermanentEventError`, whose message names fields and
  JSON types but never payload content (it is stored and shown to operators).
- Every ``str`` produced is valid UTF-8 without NUL characters, so it fits a PostgreSQL text
  column as it is. (``ParsedEvent.payload`` is the exception: it is the event as received.)

Modules by job: ``types`` (the frozen dataclasses, limits and errors), ``headers`` (headers
and addresses), ``mime`` with ``mime_shape`` and ``charsets`` (MIME and transfer encodings),
``attachments`` (attachments and filenames), ``inbound`` and ``events`` (the event kinds),
``values`` (small coercions). Its face is :func:`parse_batch`, :func:`parse_event` and
:func:`parse_inbound`, with the types they return, re-exported here.
"""

from worker.ingest.parsing.events import event_kind, parse_batch, parse_event
from worker.ingest.parsing.inbound import parse_inbound
from worker.ingest.parsing.types import (
    DEFAULT_LIMITS,
    Address,
    BatchError,
    EmailLimits,
    LimitExceededError,
    ParsedAttachment,
    ParsedEmail,
    ParsedEvent,
    PermanentEventError,
    SpamRule,
)

__all__ = [
    "DEFAULT_LIMITS",
    "Address",
    "BatchError",
    "EmailLimits",
    "LimitExceededError",
    "ParsedAttachment",
    "ParsedEmail",
    "ParsedEvent",
    "PermanentEventError",
    "SpamRule",
    "event_kind",
    "parse_batch",
    "parse_event",
    "parse_inbound",
]
