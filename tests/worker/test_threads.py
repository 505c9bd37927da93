"""Tests for worker.ingest.derive.threads: which ids of In-Reply-To and References count,
and which stored emails a reply may join. Pure: nothing is started (the joining itself,
on a real worker and database, is tests/worker/test_thread_pipeline.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.worker.test_derive import message
from worker.ingest.derive.threads import (
    MAX_PARENT_IDS,
    conversation_id,
    parent_message_ids,
    well_formed_id,
)
from worker.ingest.parsing import parse_inbound
from worker.ingest.rows import email_rows

# What mailers write in In-Reply-To instead of an id (RFC 724's old form, and others).
FREE_TEXT = [
    'Your message of "Thu, 01 Aug 2024 10:00:00 +0200"',
    "Your message of Thu, 01 Aug 2024 10:00:00 +0200",
    "<Your message>",
    "message from alice@example.org",
]


@pytest.mark.parametrize(
    "value",
    ["<a@b>", "<1.2.3@mail.example.org>", "  <CAF=x+y@Mail.Example>  ", '<"a@b"@c.example>'],
)
def test_well_formed_ids_count(value: str) -> None:
    assert well_formed_id(value) == value.strip()


@pytest.mark.parametrize(
    "value",
    [
        *FREE_TEXT,
        None,
        "",
        "a@b",  # no brackets
        "<>",
        "<@b>",
        "<a@>",
        "<nodomain>",
        "<a b@c>",  # a blank inside
        "<a@b c>",
        "<a@b@>",
        "<a@b> <c@d>",  # two ids are not one
        "<a@<b>>",
    ],
)
def test_anything_else_does_not(value: str | None) -> None:
    assert well_formed_id(value) is None


@pytest.mark.parametrize("free_text", FREE_TEXT)
def test_free_text_in_reply_to_names_no_conversation(free_text: str) -> None:
    # Before, the first word became the id: every such reply shared the thread "Your".
    assert conversation_id("<own@x.org>", free_text, ()) == "own@x.org"
    assert parent_message_ids(free_text, ()) == ()


def test_free_text_among_references_is_skipped() -> None:
    references = ("Your", "<root@x.org>", "<mid@x.org>")
    assert conversation_id("<own@x.org>", None, references) == "root@x.org"
    assert parent_message_ids(None, references) == ("<mid@x.org>", "<root@x.org>")


def test_parents_are_nearest_first_each_once_as_sent() -> None:
    parents = parent_message_ids(
        "<Parent@Mail.X.org>", ("<root@x.org>", "<mid@x.org>", "<Parent@Mail.X.org>")
    )
    # As the Message-ID column stores them (brackets and case kept), to be looked up there.
    assert parents == ("<Parent@Mail.X.org>", "<mid@x.org>", "<root@x.org>")
    assert parent_message_ids(None, ()) == ()


def test_a_huge_references_is_cut_to_the_nearest_parents_and_the_root() -> None:
    references = tuple(f"<m{n}@x.org>" for n in range(5000))
    parents = parent_message_ids(None, references)
    assert len(parents) == MAX_PARENT_IDS
    assert parents[:2] == ("<m4999@x.org>", "<m4998@x.org>")
    assert parents[-1] == "<m0@x.org>"


def _raw(headers: dict[str, str]) -> str:
    return message(headers).as_string()


def test_the_rows_of_a_parsed_reply_name_its_parents() -> None:
    event: dict[str, Any] = {
        "event": "inbound",
        "ts": 1700000000,
        "msg": {
            "raw_msg": _raw(
                {
                    "Message-ID": "<r2@x.org>",
                    "In-Reply-To": 'Your message of "Thu, 01 Aug 2024 10:00:00 +0200"',
                    "References": "<root@x.org> <r1@x.org>",
                }
            )
        },
    }
    rows = email_rows(parse_inbound(event))
    assert rows.parent_ids == ("<r1@x.org>", "<root@x.org>")
    assert rows.values["conversation_id"] == "root@x.org"  # the fallback: none is stored
