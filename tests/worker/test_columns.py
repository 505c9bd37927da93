"""worker.ingest.columns: its lengths are the schema's, and its cleaning does what it says."""

from __future__ import annotations

from typing import Any

import pytest

from shared.models import Attachment, DeadLetter, DeliveryEvent, Email, Event
from worker.ingest import columns


def length(column: Any) -> int:
    value: int = column.property.columns[0].type.length
    return value


@pytest.mark.parametrize(
    ("limit", "column"),
    [
        (columns.KIND_CHARS, Event.kind),
        (columns.KIND_CHARS, DeliveryEvent.kind),
        (columns.KIND_CHARS, DeadLetter.kind),
        (columns.ERROR_CLASS_CHARS, DeadLetter.error_class),
        (columns.CONTENT_TYPE_CHARS, Attachment.content_type),
        (columns.MANDRILL_ID_CHARS, Event.mandrill_id),
        (columns.SPF_RESULT_CHARS, Email.spf_result),
    ],
)
def test_lengths_are_the_schemas(limit: int, column: Any) -> None:
    assert limit == length(column)


def test_storable_text() -> None:
    assert columns.storable_text("a\x00b") == "ab"
    assert columns.storable_text("plain") == "plain"
    # A surrogate escape from the bytes parser stands for a raw byte: decoded as UTF-8.
    assert columns.storable_text("caf\udcc3\udca9") == "café"
    # A lone surrogate from a JSON escape cannot be stored: replaced.
    assert columns.storable_text("x\ud800y") == "x\ufffd\ufffd\ufffdy"


def test_without_nul_cleans_nested_strings_and_keeps_other_values() -> None:
    value = {"k\x00": ["a\x00", ("b", 1, None)], "n": 2.5}
    assert columns.without_nul(value) == {"k": ["a", ["b", 1, None]], "n": 2.5}


def test_bounded() -> None:
    assert columns.bounded("x" * 600) == "x" * columns.INDEXED_TEXT_CHARS
    assert columns.bounded(None) is None
    assert columns.bounded("") == ""
    assert columns.bounded("abc", 2) == "ab"
