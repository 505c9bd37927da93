"""One place that decides whether a failure is worth retrying.

*Transient* failures (a database, Redis or S3 that is down, slow or throttling) go away
by themselves: the task is retried later with backoff and nothing is recorded as failed.
*Permanent* failures (bad input) fail the same way every time: they are recorded at once
with their reason, and the rest of the batch goes on.
"""

from __future__ import annotations

import traceback

import psycopg.errors
import redis.exceptions
import sqlalchemy.exc
from botocore.exceptions import BotoCoreError, ClientError


class PermanentDeliveryError(Exception):
    """The whole delivery can never be processed (its body is missing or corrupt)."""


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
