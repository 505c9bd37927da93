"""A small Server-Sent Events client for the live-feed tests and bench/agent_bench.py:
reads events from ``GET /api/v1/stream`` over real HTTP and reconnects with
Last-Event-ID, as EventSource does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    event: str = "message"
    id: str | None = None
    data: str = ""

    def json(self) -> Any:
        return json.loads(self.data)


def events(response: httpx.Response) -> Iterator[Event]:
    """The events of a streamed response (comments, i.e. heartbeats, skipped)."""
    current = Event()
    lines: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if lines:
                current.data = "\n".join(lines)
                yield current
            elif current.id is not None or current.event != "message":
                yield current
            current, lines = Event(), []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            lines.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value


@dataclass
class FeedReader:
    """Follows the feed across reconnections; ``received`` is every email id, in order;
    ``log`` every ``email.*`` event (kind, id and data), in order."""

    base_url: str
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    last_event_id: str | None = None
    received: list[int] = field(default_factory=list)
    log: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)
    connections: int = 0

    def read(
        self, how_many: int, timeout: float, counted: tuple[str, ...] = ("email.received",)
    ) -> None:
        """Connect (resuming), read ``how_many`` events of the ``counted`` kinds (emails
        received, by default) or until ``timeout``, disconnect."""
        headers = dict(self.headers)
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        deadline = time.monotonic() + timeout
        while True:
            with httpx.stream(
                "GET",
                self.base_url + "/api/v1/stream",
                headers=headers,
                params=self.params,
                timeout=httpx.Timeout(10, read=5),
            ) as response:
                if response.status_code == 429 and time.monotonic() < deadline:
                    time.sleep(0.2)  # the previous connection's slot is not released yet
                    continue
                assert response.status_code == 200, response.read()
                self.connections += 1
                taken = 0
                for event in events(response):
                    if event.id is not None:
                        self.last_event_id = event.id
                    if event.event.startswith("email."):
                        self.log.append((event.event, event.id, event.json()))
                    if event.event == "email.received":
                        self.received.append(event.json()["email_id"])
                    if event.event in counted:
                        taken += 1
                    if taken >= how_many or time.monotonic() > deadline:
                        return
                return
