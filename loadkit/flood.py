"""Attacking connections: each declares a huge body and trickles it, from a source
address of its own choosing (Linux routes all of 127/8 to lo), until the server answers
or closes.

:class:`FloodThread` runs :func:`flood` (one :func:`trickle` per source address, all at
once) in a thread, so that the caller can measure meanwhile. Used by
``tests/receiver/test_connection_flood.py`` (with short deadlines) and the bench's
``flood`` stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field

from loadkit.hostile_webhooks import FORGED_SIGNATURE, FORM
from shared.webhook import WEBHOOK_PATH

ATTACKER_ADDRESS = "127.0.0.2"


@dataclass
class Outcome:
    """One attacking connection: the status the server answered (0: closed without an
    answer, None: still open when the flood gave up) and when it closed it."""

    source: str
    status: int | None = None
    closed_after: float | None = None
    sent: int = 0


def attack_headers(host: str, port: int, declared: int) -> bytes:
    lines = [
        f"POST {WEBHOOK_PATH} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Content-Type: {FORM}",
        f"X-Mandrill-Signature: {FORGED_SIGNATURE}",
        f"Content-Length: {declared}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("latin-1")


async def trickle(
    host: str,
    port: int,
    source: str,
    *,
    declared: int,
    piece: int,
    every: float,
    give_up: float,
) -> Outcome:
    """One connection: the headers, then ``piece`` bytes every ``every`` seconds until
    the server answers or closes (or ``give_up`` seconds pass)."""
    outcome = Outcome(source)
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    started = time.monotonic()
    writer.write(attack_headers(host, port, declared))

    async def send_pieces() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                writer.write(b"a" * piece)
                await writer.drain()
                outcome.sent += piece
                await asyncio.sleep(every)

    sender = asyncio.create_task(send_pieces())
    answer = b""
    try:
        async with asyncio.timeout(give_up):
            while chunk := await reader.read(65536):
                answer += chunk
        outcome.closed_after = time.monotonic() - started
    except TimeoutError:  # before OSError, of which it is a subclass
        pass  # still open: closed_after stays None
    except (ConnectionError, OSError):  # reset: closed with unread bytes in flight
        outcome.closed_after = time.monotonic() - started
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    if outcome.closed_after is not None:
        outcome.status = _status(answer)
    return outcome


def _status(answer: bytes) -> int:
    parts = answer.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return 0


async def flood(
    host: str,
    port: int,
    sources: list[str],
    *,
    declared: int,
    piece: int,
    every: float,
    give_up: float,
) -> list[Outcome]:
    """One :func:`trickle` connection per entry of ``sources`` (its source address), all
    at once."""
    return await asyncio.gather(
        *(
            trickle(
                host, port, source, declared=declared, piece=piece, every=every, give_up=give_up
            )
            for source in sources
        )
    )


@dataclass
class FloodThread:
    """:func:`flood` in a thread of its own, so that the caller can measure meanwhile."""

    host: str
    port: int
    sources: list[str]
    declared: int
    piece: int
    every: float
    give_up: float
    outcomes: list[Outcome] = field(default_factory=list)
    started_at: float = 0.0
    _thread: threading.Thread | None = None

    def start(self) -> None:
        def run() -> None:
            self.outcomes = asyncio.run(
                flood(
                    self.host,
                    self.port,
                    self.sources,
                    declared=self.declared,
                    piece=self.piece,
                    every=self.every,
                    give_up=self.give_up,
                )
            )

        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self) -> list[Outcome]:
        assert self._thread is not None
        self._thread.join()
        return self.outcomes


def attacker_sources(count: int, distinct: bool) -> list[str]:
    """``count`` source addresses: all 127.0.0.2, or 127.0.0.2, .3, ... (127/8 is lo)."""
    if not distinct:
        return [ATTACKER_ADDRESS] * count
    return [f"127.0.{(n + 2) // 256}.{(n + 2) % 256}" for n in range(count)]
