"""Every decision about a failure, in one place: is it worth retrying, what is it
called, what is said about it, and when is the next attempt.

*Transient* failures (a database, Redis or S3 that is down, slow or throttling) go away
by themselves: the task is retried later with backoff and nothing is recorded as failed.
*Permanent* failures (bad input) fail the same way every time: they are recorded at once
with their reason, and the rest of the batch goes on. Celery's soft time limit
(``worker.interrupts``) is transient: an attempt that ran out of time is retried like one
that lost its database (and ``worker.losses`` bounds an input that always runs out).

What leaves the worker about a failure (dead letters, logs, Celery's events and so
Flower) is :func:`describe`'s summary, never the exception's message, which can quote
the payload.

The retry policy, declared once for every task: transient failures are retried with
exponential backoff and full jitter until a deadline counted from when the receiver
accepted the batch; unknown errors are retried a few times (they may be transient in
disguise); then the delivery becomes a dead letter that can be replayed.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg.errors
import redis.exceptions
import sqlalchemy.exc
from botocore.exceptions import BotoCoreError, ClientError

from shared.lifecycle.objects import ArchiveRemovedMeanwhileError
from shared.settings import Settings
from worker.ingest.columns import REASON_CHARS
from worker.ingest.parsing import LimitExceededError, PermanentEventError
from worker.interrupts import INTERRUPTS


class PermanentDeliveryError(Exception):
    """The whole delivery can never be processed (its body is missing or corrupt)."""


class TaskFailure(Exception):
    """What Celery is told about a failure: :func:`describe`'s summary of it.

    Celery puts the exception it is given into its logs and into its task-retried and
    task-failed events (which Flower shows); the original's message could quote the
    payload, so it gets this instead. ``error_type`` keeps the original's class name for
    the retry metrics.
    """

    # Celery rebuilds exceptions from their message (the JSON result and event format),
    # so the constructor keeps Exception's signature and the type rides along as an attribute.
    error_type: str = "TaskFailure"

    @classmethod
    def of(cls, failure: BaseException) -> TaskFailure:
        summary = cls(describe(failure))
        summary.error_type = type(failure).__name__
        return summary


def describe(exc: BaseException) -> str:
    """A failure's type and, for a database or S3 error, the codes and schema names it
    involves; never its message (a driver error can quote the value it refused, and a
    SQLAlchemy error lists the statement's parameters).

    e.g. ``IntegrityError: CheckViolation (SQLSTATE 23514, table emails, constraint
    ck_subject)`` or ``ClientError: SlowDown``.
    """
    name = type(exc).__name__
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None)
        if sqlstate is None:
            # Raised by the client (no connection, a closed one): the server never saw a
            # value, and the first line says what went wrong with the connection.
            lines = str(orig).splitlines()
            first = lines[0][:200] if lines else ""
            return f"{name}: {type(orig).__name__}" + (f": {first}" if first else "")
        details = [f"SQLSTATE {sqlstate}"]
        diag = getattr(orig, "diag", None)
        for label, attribute in (
            ("table", "table_name"),
            ("column", "column_name"),
            ("constraint", "constraint_name"),
        ):
            value = getattr(diag, attribute, None)
            if value:
                details.append(f"{label} {value}")
        return f"{name}: {type(orig).__name__} ({', '.join(details)})"
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "unknown")
        return name if name == code else f"{name}: {code}"  # boto names some by their code
    return name


def safe_traceback(exc: BaseException) -> str:
    """Where an exception was raised, frame by frame, without its message or locals.

    Exception messages can quote the payload (a KeyError names the key, a decoding
    error shows the bytes), so dead letters keep the stack and the type only.
    """
    frames = traceback.format_list(traceback.extract_tb(exc.__traceback__))
    chain = []
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        chain.append(f"caused by {type(cause).__name__}\n")
        chain.extend(traceback.format_list(traceback.extract_tb(cause.__traceback__)))
    return "".join([*frames, f"{type(exc).__name__}\n", *chain])[-8000:]


# S3 error codes that mean "try again later" rather than "your request is wrong".
_TRANSIENT_S3_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeTooSkewed",
    }
)


def is_rejected_row(exc: BaseException) -> bool:
    """The database refused this row's values: retrying the same row cannot help."""
    if isinstance(exc, sqlalchemy.exc.DataError | sqlalchemy.exc.IntegrityError):
        return True
    # An over-long value for an index surfaces as OperationalError (SQLSTATE 54000).
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and isinstance(
        exc.orig, psycopg.errors.ProgramLimitExceeded
    )


def is_too_deeply_nested(exc: BaseException) -> bool:
    """The input is nested deeper than the code that walks it can recurse (cleaning a
    JSON document, the JSONB encoder): the same input fails the same way every time."""
    if isinstance(exc, RecursionError):
        return True
    # SQLAlchemy wraps what a bind processor raises (the JSONB encoder) in StatementError.
    return isinstance(exc, sqlalchemy.exc.StatementError) and isinstance(exc.orig, RecursionError)


# Failures of a service rather than of the input. (BotoCoreError covers
# EndpointConnectionError, ReadTimeoutError, ConnectionClosedError, ...)
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.DisconnectionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    BotoCoreError,
    ConnectionError,
    TimeoutError,
    ArchiveRemovedMeanwhileError,
    *INTERRUPTS,
)


def _is_transient_s3(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status >= 500 or error.get("Code") in _TRANSIENT_S3_CODES


def is_transient(exc: BaseException) -> bool:
    if is_rejected_row(exc):
        return False
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        # Connection losses and server shutdowns surface as OperationalError (or as
        # `connection_invalidated`); constraint and data errors are the input's fault.
        return isinstance(exc, sqlalchemy.exc.OperationalError) or exc.connection_invalidated
    if isinstance(exc, ClientError):
        return _is_transient_s3(exc)
    return isinstance(exc, _TRANSIENT_TYPES)


# --- one event: permanent failures ----------------------------------------------------


def event_failure_class(exc: BaseException) -> str | None:
    """The dead letter's error class of an event that can never succeed as it is, or
    None when the failure is not the event's (transient or unknown: the task decides)."""
    if isinstance(exc, LimitExceededError):
        return f"over_limit:{exc.limit}"
    if isinstance(exc, PermanentEventError) or is_too_deeply_nested(exc):
        return "invalid_event"
    if is_rejected_row(exc):
        return "rejected_row"
    return None


def event_failure_reason(exc: BaseException) -> str:
    """What the dead letter of a permanently failed event says (no content)."""
    if is_too_deeply_nested(exc):
        return "the event is nested too deeply to store (RecursionError)"
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        # Not the driver's message: it can quote the value it refused.
        return f"database rejected the row: {describe(exc)}"[:REASON_CHARS]
    return str(exc)[:REASON_CHARS]


# --- the retry policy -------------------------------------------------------------------

BACKOFF_BASE_SECONDS = 1.0


@dataclass(frozen=True)
class RetryLater:
    countdown: float


@dataclass(frozen=True)
class GiveUp:
    error_class: str
    message: str


def backoff_seconds(retries: int, cap: float) -> float:
    ceiling = min(cap, BACKOFF_BASE_SECONDS * 2 ** min(retries, 30))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


def decide(
    exc: BaseException,
    *,
    retries: int,
    received_at: datetime,
    now: datetime,
    settings: Settings,
) -> RetryLater | GiveUp:
    """What to do with a delivery whose attempt failed: retry later, or give up."""
    name = type(exc).__name__
    if is_transient(exc):
        deadline = received_at + timedelta(seconds=settings.retry_deadline_seconds)
        countdown = backoff_seconds(retries, settings.retry_backoff_max_seconds)
        if now + timedelta(seconds=countdown) <= deadline:
            return RetryLater(countdown)
        hours = settings.retry_deadline_seconds / 3600
        return GiveUp(
            f"transient:{name}",
            f"{name} persisted for {hours:g} h ({retries + 1} attempts); "
            "replay once the service is back",
        )
    if retries < settings.unknown_error_retries:
        return RetryLater(backoff_seconds(retries, settings.retry_backoff_max_seconds))
    return GiveUp(
        f"unknown:{name}",
        f"unexpected {name} on {retries + 1} attempts; see the traceback, fix, then replay",
    )
