"""What every group of settings may use: sizes, the error, and how raw values are read.

``SettingsError`` is what a process shows instead of a traceback when its configuration
cannot work. ``split_csv`` and ``empty_is_unset`` are the two ways an environment value
is read before pydantic validates it; a group registers them as ``mode="before"`` field
validators on its own fields.

May import: the standard library only. Every other module of the package imports this.
"""

from __future__ import annotations

MIB = 1024 * 1024


class SettingsError(RuntimeError):
    """The configuration cannot work; the message says which variable to set."""


def split_csv(value: object) -> object:
    """Read a comma-separated environment value as a list; leave lists alone."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def empty_is_unset(value: object) -> object:
    """KAVE_X= (as in .env.example) means unset: not an empty secret, and not the
    working directory for a path."""
    return None if value == "" else value
