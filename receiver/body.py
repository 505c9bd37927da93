"""Reading a webhook body: memory follows what has arrived, and a body must keep arriving.

**Memory.** A header is only a claim: ``Content-Length`` may promise 100 MiB and deliver
22 bytes. So the buffer grows from the bytes received, never from the declared length,
and every byte of it is reserved first from the process's budget
(:class:`receiver.in_flight.Ticket`, 503 past it). The declared length is used only as a
ceiling, so a body that does arrive in full is never given more room than it needs.

**Time.** The next bytes must come within ``KAVE_RECEIVER_BODY_IDLE_SECONDS``, and after
``KAVE_RECEIVER_BODY_GRACE_SECONDS`` the body must have kept up an average of
``KAVE_RECEIVER_BODY_MIN_RATE_BYTES`` per second: at ``t`` seconds in, at least
``min_rate x (t - grace)`` bytes. A body of N bytes therefore has until
``grace + N / min_rate``, whatever its header says, and a client trickling bytes to hold
a connection (and its slot and buffer) is answered 408 and its connection closed.
"""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive

from receiver.in_flight import Ticket
from shared.settings import Settings
from shared.web.errors import ApiError, PayloadTooLargeError


def payload_too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body exceeds {limit} bytes; raise KAVE_MAX_BODY_BYTES if such mail is expected"
    )


class BodyTooSlowError(ApiError):
    """The body stopped arriving, or arrives too slowly: 408, and the connection closes."""

    status_code = 408

    def __init__(self, received: int) -> None:
        super().__init__(
            "the request body arrived too slowly and the request was dropped; send the "
            "body without pauses (see KAVE_RECEIVER_BODY_IDLE_SECONDS and "
            "KAVE_RECEIVER_BODY_MIN_RATE_BYTES)",
            headers={"Connection": "close"},
        )
        self.received = received


@dataclass(frozen=True, slots=True)
class BodyPace:
    """How long a body may take (see the module docstring)."""

    idle_seconds: float
    grace_seconds: float
    min_rate: float  # bytes per second

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyPace:
        return cls(
            idle_seconds=settings.receiver_body_idle_seconds,
            grace_seconds=settings.receiver_body_grace_seconds,
            min_rate=float(settings.receiver_body_min_rate_bytes),
        )

    def wait_allowed(self, started: float, received: int, now: float) -> float:
        """Seconds the next bytes may still take, with ``received`` bytes in so far."""
        behind_at = started + self.grace_seconds + received / self.min_rate
        return min(self.idle_seconds, behind_at - now)


async def read_body_limited(
    request: Request, limit: int, declared_size: int | None, *, ticket: Ticket, pace: BodyPace
) -> bytes:
    """The body; :class:`PayloadTooLargeError` once more than ``limit`` bytes came,
    :class:`BodyTooSlowError` when it does not keep ``pace``, and the ticket's
    :class:`~receiver.in_flight.BufferFullError` when the process has no room for it.

    ``declared_size`` is the request's Content-Length as the caller parsed it (None
    without one); a declared size over the limit is refused before a byte is read.
    """
    if declared_size is not None and declared_size > limit:
        raise payload_too_large(limit)
    if declared_size is None:
        buffer = _Buffer(ticket, ceiling=limit, make_room=False)
    else:
        buffer = _Buffer(ticket, ceiling=declared_size, make_room=True)
    receive = request.receive
    started = time.monotonic()
    while True:
        message = await _next_message(receive, pace, started, buffer.size)
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        if chunk:
            if buffer.size + len(chunk) > limit:
                raise payload_too_large(limit)
            buffer.add(chunk)
        if not message.get("more_body", False):
            return buffer.value()


async def _next_message(receive: Receive, pace: BodyPace, started: float, received: int) -> Message:
    wait = pace.wait_allowed(started, received, time.monotonic())
    if wait <= 0:
        raise BodyTooSlowError(received)
    try:
        # Cancelling uvicorn's receive() is safe: it only waits for an event, and
        # whatever arrived meanwhile stays in its buffer.
        async with asyncio.timeout(wait):
            return await receive()
    except TimeoutError:
        raise BodyTooSlowError(received) from None


class _Buffer:
    """The body so far, never holding more than twice what has arrived.

    One chunk is the whole body of most requests: it is kept as it is. A larger body is
    written into a BytesIO, and the room reserved for it doubles as bytes arrive, up to
    the declared length and no further. With ``make_room`` (a declared length) the
    BytesIO is grown to that room at once: a few reallocations (glibc remaps the large
    blocks instead of copying them), where growing by the small steps BytesIO takes on
    its own left the allocator holding up to three times an 8 MB body. Without a length
    the room would be a guess, and filling it would cost its whole size: the BytesIO
    grows by its own small steps, always within the room reserved. At the end,
    getvalue() hands the BytesIO's own buffer over as the bytes object, so a 55 MB body
    costs 55 MB, not the 110 MB that joining a list of chunks costs at its peak.
    """

    __slots__ = ("capacity", "ceiling", "first", "make_room", "size", "ticket", "written")

    def __init__(self, ticket: Ticket, ceiling: int, *, make_room: bool) -> None:
        self.ticket = ticket
        self.ceiling = ceiling
        self.make_room = make_room
        self.first = b""
        self.written: io.BytesIO | None = None
        self.size = 0  # bytes received
        self.capacity = 0  # bytes held (reserved from the ticket)

    def add(self, chunk: bytes) -> None:
        needed = self.size + len(chunk)
        if needed > self.capacity:
            self._grow(needed)
        if self.written is not None:
            self.written.write(chunk)
        else:
            self.first = chunk
        self.size = needed

    def _grow(self, needed: int) -> None:
        if self.size == 0:  # the first chunk: kept as it is
            self.ticket.reserve(needed)
            self.capacity = needed
            return
        room = max(needed, min(self.ceiling, 2 * self.capacity))
        self.ticket.reserve(room - self.capacity)
        if self.written is None:
            self.written = io.BytesIO()
            if self.make_room:
                _make_room(self.written, room)
            self.written.write(self.first)
            self.first = b""
        elif self.make_room:
            _make_room(self.written, room)
        self.capacity = room

    def value(self) -> bytes:
        if self.written is None:
            return self.first
        self.written.truncate(self.size)  # room that was not used (a length that lied)
        body = self.written.getvalue()
        self.written.close()
        return body


def _make_room(buffer: io.BytesIO, room: int) -> None:
    """Grow ``buffer`` to ``room`` bytes at once (writing its last byte allocates it),
    keeping the write position."""
    position = buffer.tell()
    buffer.seek(room - 1)
    buffer.write(b"\0")
    buffer.seek(position)
