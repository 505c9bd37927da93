"""SQL conditions the list filters share."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstrumentedAttribute


def lower_equals(column: Any, value: str) -> ColumnElement[bool]:
    return func.lower(column) == value.lower()


def has_address(column: InstrumentedAttribute[list[Any]], address: str) -> ColumnElement[bool]:
    """The JSON list of ``{"name", "address"}`` holds ``address`` (case-insensitive)."""
    element = func.jsonb_array_elements(column).table_valued(sa.column("value", JSONB)).alias()
    return exists(
        select(1)
        .select_from(element)
        .where(func.lower(element.c.value["address"].astext) == address.lower())
    )
