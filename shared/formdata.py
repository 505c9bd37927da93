"""Decoding ``application/x-www-form-urlencoded`` bodies, shared by receiver and worker.

The receiver needs the decoded values to check the signature and the worker needs them
to read the batch; both must decode the same way, byte for byte.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

EVENTS_FIELD = "mandrill_events"


class FormDecodeError(ValueError):
    """The body is not valid form encoding of UTF-8 text."""


def decode_form(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise FormDecodeError("the form body is not valid UTF-8") from exc


def events_field(fields: list[tuple[str, str]]) -> str | None:
    """The ``mandrill_events`` value (the last one wins, as in PHP, which Mandrill is)."""
    value: str | None = None
    for key, item in fields:
        if key == EVENTS_FIELD:
            value = item
    return value
