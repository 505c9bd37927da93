"""Keyset pagination of every list, newest first.

Rows are ordered by (timestamp, id) descending and a cursor is the (timestamp, id) of the
last row of the previous page, so a page never misses or repeats a row, however many
rows arrive meanwhile. Cursors are opaque to clients (base64 of that pair) and carry
nothing secret.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import sqlalchemy as sa
from fastapi import Query
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

RowT = TypeVar("RowT")

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50

PageSize = Annotated[
    int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Items per page, at most {MAX_PAGE_SIZE}.")
]
CursorParam = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]*$",
        description="`next_cursor` of the previous page; omit for the first (newest) page.",
    ),
]


class InvalidCursorError(ValueError):
    """The cursor was not made by this API (or by this list)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    at: datetime
    id: int | str

    def encode(self) -> str:
        raw = json.dumps([self.at.isoformat(), self.id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str, id_type: type[int] | type[str]) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            at_text, id_value = json.loads(raw)
            at = datetime.fromisoformat(at_text)
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise InvalidCursorError("not a cursor of this list") from None
        if at.tzinfo is None or type(id_value) is not id_type or not _plausible_id(id_value):
            raise InvalidCursorError("not a cursor of this list")
        return cls(at=at, id=id_value)


def _plausible_id(value: int | str) -> bool:
    # Out-of-range values would reach PostgreSQL as errors (BIGINT, text without NUL).
    if isinstance(value, int):
        return 0 < value < 2**63
    return 0 < len(value) <= 64 and "\x00" not in value


@dataclass(frozen=True, slots=True)
class Page(Generic[RowT]):
    rows: list[RowT]
    next_cursor: str | None


def paginate(
    session: Session,
    stmt: Select[Any],
    at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[Any],
    *,
    cursor: Cursor | None,
    limit: int,
) -> Page[Any]:
    """The page of ``stmt``'s rows after ``cursor``, newest (``at``, ``id_``) first."""
    if cursor is not None:
        stmt = stmt.where(tuple_(at, id_) < tuple_(sa.literal(cursor.at, at.type), cursor.id))
    # One row more than the page: it only says another page exists.
    rows = session.scalars(stmt.order_by(at.desc(), id_.desc()).limit(limit + 1)).all()
    page = list(rows[:limit])
    if len(rows) <= limit:
        return Page(page, None)
    last = page[-1]
    return Page(page, Cursor(getattr(last, at.key), getattr(last, id_.key)).encode())


def parse_cursor(value: str | None, id_type: type[int] | type[str]) -> Cursor | None:
    if not value:
        return None
    try:
        return Cursor.decode(value, id_type)
    except InvalidCursorError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": f"{exc}: pass next_cursor unchanged"}]
        ) from None
