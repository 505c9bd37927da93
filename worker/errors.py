"""One place that decides whether a failure is worth retrying.

*Transient* failures (a database, Redis or S3 that is down, slow or throttling) go away
by themselves: the task is retried later with backoff and nothing is recorded as failed.
*Permanent* failures (bad input) fail the same way every time: they are recorded at once
with their reason, and the rest of the batch goes on.
"""

from __future__ import annotations

import redis.exceptions
import sqlalchemy.exc
from botocore.exceptions import BotoCoreError, ClientError


class PermanentDeliveryError(Exception):
    """The whole delivery can never be processed (its body is missing or corrupt)."""


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


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        # Connection losses and server shutdowns surface as OperationalError (or as
        # `connection_invalidated`); constraint and data errors are the input's fault.
        return isinstance(exc, sqlalchemy.exc.OperationalError) or exc.connection_invalidated
    if isinstance(exc, sqlalchemy.exc.TimeoutError | sqlalchemy.exc.DisconnectionError):
        return True
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or error.get("Code") in _TRANSIENT_S3_CODES
    if isinstance(exc, BotoCoreError):
        # EndpointConnectionError, ReadTimeoutError, ConnectionClosedError, ...
        return True
    return isinstance(exc, ConnectionError | TimeoutError)
