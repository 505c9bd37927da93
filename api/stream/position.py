"""Where a stream stands: (transaction id, email id, kind), and the event ids that name it.

``email.received`` is ``<position>-<email id>``; ``email.text_ready`` is
``<position>-<email id>-t`` (of the same email, received comes first at one position).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ID = 2**63 - 1
RECEIVED, TEXT_READY = 0, 1
_EVENT_ID = re.compile(r"^(\d{1,19})-(\d{1,19})(-t)?$")


class BadEventIdError(ValueError):
    """Not an event id of this feed."""


@dataclass(frozen=True, slots=True, order=True)
class Position:
    position: int
    email_id: int
    kind: int = RECEIVED

    def event_id(self) -> str:
        suffix = "-t" if self.kind == TEXT_READY else ""
        return f"{self.position}-{self.email_id}{suffix}"

    @classmethod
    def parse(cls, value: str) -> Position:
        match = _EVENT_ID.match(value.strip())
        if not match or int(match.group(1)) > MAX_ID or int(match.group(2)) > MAX_ID:
            raise BadEventIdError(
                f"Last-Event-ID {value[:40]!r} is not an id this stream sent "
                "('<n>-<n>' or '<n>-<n>-t')"
            )
        kind = TEXT_READY if match.group(3) else RECEIVED
        return cls(int(match.group(1)), int(match.group(2)), kind)

    @classmethod
    def after_all(cls, position: int) -> Position:
        """Past every event of transaction ids up to ``position``."""
        return cls(position, MAX_ID, TEXT_READY)
