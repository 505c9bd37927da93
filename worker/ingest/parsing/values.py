"""Small coercions of JSON values and digests, shared by the parsing modules."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, TypeVar

from worker.ingest.columns import storable_text
from worker.interrupts import INTERRUPTS

_T = TypeVar("_T")


def guard(call: Callable[[], _T], default: _T) -> _T:
    """Call a stdlib accessor that may raise on malformed input; ``default`` if it does."""
    try:
        return call()
    except INTERRUPTS:
        raise
    except Exception:
        return default


def opt_str(value: object) -> str | None:
    return storable_text(value) if isinstance(value, str) else None


def opt_nonblank(value: object) -> str | None:
    text = opt_str(value)
    return (text.strip() or None) if text is not None else None


def opt_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # a JSON integer too large for a float
        return None
    return number if math.isfinite(number) else None


def opt_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def timestamp(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


_JSON_TYPES: Final = (
    (bool, "boolean"),
    (int, "number"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def json_type(value: object) -> str:
    """The JSON name of a value's type, for error messages that must not quote the value."""
    if value is None:
        return "null"
    # bool before int: True is an int to isinstance.
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8", "surrogatepass"))
