"""Query and path parameters the routes share: ids, text filters, instants."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AwareDatetime, BeforeValidator

# PostgreSQL BIGINT: larger ids cannot exist, and sending them would be a database error.
MAX_ID = 2**63 - 1

# PostgreSQL text cannot hold NUL; refusing it here keeps it a 422 instead of a 500.
_NO_NUL = r"^[^\x00]*$"

IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="The resource's id.")]


def text_filter(description: str, max_length: int = 512) -> Any:
    return Query(min_length=1, max_length=max_length, pattern=_NO_NUL, description=description)


_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$"
)


def _rfc3339(value: object) -> object:
    # pydantic alone would also take a bare number as a Unix time, and no zone as local.
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("use an RFC 3339 date-time with a zone, e.g. 2026-11-26T09:00:00Z")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


def since_filter(what: str) -> Any:
    return Query(
        description=f"Only {what} at or after this instant (RFC 3339, e.g. 2026-11-26T09:00:00Z)."
    )


def until_filter(what: str) -> Any:
    return Query(
        description=f"Only {what} before this instant (RFC 3339, e.g. 2026-11-26T10:00:00Z)."
    )
