"""The live feed's event ids (pure): both kinds, their order, and refusals."""

from __future__ import annotations

import pytest

from api.stream.position import MAX_ID, RECEIVED, TEXT_READY, BadEventIdError, Position


def test_event_ids_name_the_kind_and_parse_back() -> None:
    received, ready = Position(7, 3), Position(7, 3, TEXT_READY)
    assert (received.event_id(), ready.event_id()) == ("7-3", "7-3-t")
    assert Position.parse("7-3") == received
    assert Position.parse(" 7-3-t ") == ready
    # At one position, an email's received comes before its text_ready, both before the
    # next email's; a stream's start is past every event of its position.
    assert received < ready < Position(7, 4) < Position.after_all(7) < Position(8, 0)
    assert Position.after_all(7) == Position(7, MAX_ID, TEXT_READY)
    assert Position.parse("7-3").kind == RECEIVED


@pytest.mark.parametrize(
    "value", ["", "7", "7-3-x", "7-3-t-t", "-7-3", "a-b", f"{2**63}-1", "1-99999999999999999999"]
)
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(BadEventIdError):
        Position.parse(value)
