"""What a webhook POST may hold while it is in flight: its buffer follows the bytes that
arrived (never the declared length), all bodies together stay within the process's
budget (503), one client has a bounded number of requests in flight (429), and a body
must keep its pace (408). Every refusal before the end of the body closes the connection,
and every request gives back all it held, however it ended.

The requests go through the real receiver app over httpx's ASGI transport, which hands
the body to the app chunk by chunk as the client produces it (the test client would
join it into one). The app's lifespan is not run: every batch here is refused before it
would be queued. The same over a real uvicorn: ``test_connection_flood.py``.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import generate_latest

from receiver.app import create_app
from receiver.body import BodyPace
from receiver.in_flight import InFlight
from shared.settings import Settings
from tests.services import derive_settings
from tests.webhooks import WEBHOOK_PATH

KIB = 1024
MIB = 1024 * KIB
FORGED = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
FORM = "application/x-www-form-urlencoded"


def _headers(declared: int | None = None) -> dict[str, str]:
    headers = {"Content-Type": FORM, "X-Mandrill-Signature": FORGED}
    if declared is not None:
        headers["Content-Length"] = str(declared)
    return headers


def _post(
    app: FastAPI,
    body: AsyncIterator[bytes],
    headers: dict[str, str],
    client: tuple[str, int] = ("198.51.100.7", 50000),
) -> Any:
    """The coroutine of one POST from ``client`` whose body comes from ``body``."""
    transport = httpx.ASGITransport(app=app, client=client)

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as http:
            return await http.post(WEBHOOK_PATH, content=body, headers=headers)

    return post()


async def _pieces(*pieces: bytes, hold: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """``pieces`` one by one; with ``hold``, waits for it after the first."""
    for n, piece in enumerate(pieces):
        yield piece
        if n == 0 and hold is not None:
            await hold.wait()


def _counts(app: FastAPI) -> InFlight:
    in_flight: InFlight = app.state.in_flight
    return in_flight


def _assert_nothing_held(app: FastAPI) -> None:
    counts = _counts(app)
    assert (counts.buffered, counts.requests) == (0, {})


def _refusals(app: FastAPI, reason: str) -> str:
    """The line of the refusal counter for ``reason`` in the app's metrics."""
    text = generate_latest(app.state.metrics.registry).decode()
    prefix = f'kave_receiver_webhook_refusals_total{{reason="{reason}"}} '
    return next((line for line in text.splitlines() if line.startswith(prefix)), "")


def _app(settings: Settings, **changes: Any) -> FastAPI:
    return create_app(derive_settings(settings, log_level="WARNING", **changes))


# --- the buffer follows what arrived -----------------------------------------------------


def _traced_peak(run: Callable[[], httpx.Response]) -> tuple[httpx.Response, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline, _ = tracemalloc.get_traced_memory()
        response = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return response, peak - baseline


def test_a_declared_100_mib_with_22_bytes_sent_holds_22_bytes(receiver_settings: Settings) -> None:
    app = _app(receiver_settings)
    body = (b"mandrill_events=%5B", b"%5D")  # 22 bytes, in two pieces

    response, peak = _traced_peak(
        lambda: asyncio.run(_post(app, _pieces(*body), _headers(declared=100 * MIB)))
    )
    assert response.status_code == 401  # read in full and verified: the signature is wrong
    # The whole request, client included, allocated less than this at its peak; a buffer
    # sized from the header would be 100 MiB.
    assert peak < 512 * KIB, f"{peak / MIB:.1f} MiB"
    _assert_nothing_held(app)


def test_a_large_body_holds_at_most_twice_what_arrived(receiver_settings: Settings) -> None:
    app = _app(receiver_settings)
    sent = 3 * MIB
    pieces = [b"a" * (64 * KIB)] * (sent // (64 * KIB))

    for declared in (100 * MIB, None):  # a header that lies, and none at all (chunked)
        response, peak = _traced_peak(
            lambda declared=declared: asyncio.run(
                _post(app, _pieces(*pieces), _headers(declared=declared))
            )
        )
        assert response.status_code == 400  # no mandrill_events: read in full, then refused
        assert peak < 2 * sent + MIB, f"declared {declared}: {peak / MIB:.1f} MiB"
        _assert_nothing_held(app)


# --- the process's budget ------------------------------------------------------------------


def test_past_the_buffered_bytes_budget_a_post_is_503_and_the_budget_comes_back(
    receiver_settings: Settings,
) -> None:
    app = _app(receiver_settings, max_body_bytes=64 * KIB, receiver_max_buffered_bytes=64 * KIB)
    hold = asyncio.Event()

    async def scenario() -> tuple[httpx.Response, httpx.Response, int, httpx.Response]:
        holder = asyncio.create_task(
            _post(app, _pieces(b"a" * (60 * KIB), b"b", hold=hold), _headers(), ("192.0.2.1", 1))
        )
        while _counts(app).buffered < 60 * KIB:  # the holder's first piece is in
            await asyncio.sleep(0.01)
        refused = await _post(app, _pieces(b"c" * (4 * KIB), b"d" * (4 * KIB)), _headers())
        held_meanwhile = _counts(app).buffered
        hold.set()
        held = await holder
        after = await _post(app, _pieces(b"e" * (4 * KIB), b"f" * (4 * KIB)), _headers())
        return refused, held, held_meanwhile, after

    refused, held, held_meanwhile, after = asyncio.run(scenario())
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "10"
    assert refused.headers["Connection"] == "close"
    assert "KAVE_RECEIVER_MAX_BUFFERED_BYTES" in refused.json()["message"]
    assert held_meanwhile == 60 * KIB  # the refused request gave back what it had taken
    assert held.status_code == 400  # the holder was read in full
    assert after.status_code == 400  # room again once the holder ended
    assert _refusals(app, "buffer_full").endswith(" 1.0")
    _assert_nothing_held(app)


def test_a_request_that_fails_mid_body_gives_back_everything(receiver_settings: Settings) -> None:
    app = _app(receiver_settings)

    async def broken_body() -> AsyncIterator[bytes]:
        yield b"a" * (64 * KIB)
        yield b"b" * (64 * KIB)
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        asyncio.run(_post(app, broken_body(), _headers()))
    _assert_nothing_held(app)


def test_the_budget_may_not_be_below_the_body_cap(receiver_settings: Settings) -> None:
    with pytest.raises(ValueError, match="KAVE_RECEIVER_MAX_BUFFERED_BYTES"):
        derive_settings(
            receiver_settings, max_body_bytes=2 * MIB, receiver_max_buffered_bytes=1 * MIB
        )


# --- requests in flight per client ---------------------------------------------------------


def test_past_its_requests_in_flight_a_client_gets_429_before_its_body_is_read(
    receiver_settings: Settings,
) -> None:
    app = _app(receiver_settings, receiver_max_requests_per_client=2)
    crowded, other = ("198.51.100.7", 50000), ("198.51.100.8", 50000)
    hold = asyncio.Event()
    pulled: list[bytes] = []

    async def watched() -> AsyncIterator[bytes]:
        for piece in (b"mandrill_events=", b"%5B%5D"):
            pulled.append(piece)
            yield piece

    async def scenario() -> list[httpx.Response]:
        holders = [
            asyncio.create_task(_post(app, _pieces(b"a", b"b", hold=hold), _headers(), crowded))
            for _ in range(2)
        ]
        while _counts(app).requests.get("198.51.100.7") != 2:
            await asyncio.sleep(0.01)
        refused = await _post(app, watched(), _headers(), crowded)
        # Another client is not affected.
        elsewhere = await _post(app, _pieces(b"x", b"y"), _headers(), other)
        hold.set()
        held = await asyncio.gather(*holders)
        again = await _post(app, _pieces(b"x", b"y"), _headers(), crowded)
        return [refused, elsewhere, *held, again]

    refused, elsewhere, *held, again = asyncio.run(scenario())
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "10"
    assert refused.headers["Connection"] == "close"
    assert "KAVE_RECEIVER_MAX_REQUESTS_PER_CLIENT" in refused.json()["message"]
    assert pulled == []  # refused before a byte of its body was read
    assert elsewhere.status_code == 400
    assert [response.status_code for response in held] == [400, 400]
    assert again.status_code == 400  # its slots came back
    assert _refusals(app, "client_in_flight").endswith(" 1.0")
    _assert_nothing_held(app)


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_slots(
    receiver_settings: Settings,
) -> None:
    app = _app(receiver_settings, receiver_max_requests_per_client=1, trusted_proxies="10.0.0.0/8")
    proxy = ("10.0.0.2", 50000)
    hold = asyncio.Event()

    def forwarded(client: str) -> dict[str, str]:
        return {**_headers(), "X-Forwarded-For": client}

    async def scenario() -> list[httpx.Response]:
        holder = asyncio.create_task(
            _post(app, _pieces(b"a", b"b", hold=hold), forwarded("203.0.113.1"), proxy)
        )
        while not _counts(app).requests:
            await asyncio.sleep(0.01)
        same = await _post(app, _pieces(b"x", b"y"), forwarded("203.0.113.1"), proxy)
        other = await _post(app, _pieces(b"x", b"y"), forwarded("203.0.113.2"), proxy)
        hold.set()
        return [same, other, await holder]

    same, other, held = asyncio.run(scenario())
    assert (same.status_code, other.status_code, held.status_code) == (429, 400, 400)
    _assert_nothing_held(app)


# --- the body's pace ----------------------------------------------------------------------


def test_a_body_that_stops_arriving_is_408_and_one_that_keeps_its_pace_is_read(
    receiver_settings: Settings,
) -> None:
    app = _app(
        receiver_settings,
        receiver_body_idle_seconds=0.5,
        receiver_body_grace_seconds=0.3,
        receiver_body_min_rate_bytes=4 * KIB,
    )

    async def stalls() -> AsyncIterator[bytes]:
        yield b"a" * KIB
        await asyncio.sleep(30)
        yield b"never"

    async def steady() -> AsyncIterator[bytes]:
        for _ in range(10):  # 2 KiB every 0.1 s: 20 KiB/s, five times the minimum
            yield b"a" * (2 * KIB)
            await asyncio.sleep(0.1)

    started = time.monotonic()
    stalled = asyncio.run(_post(app, stalls(), _headers(declared=100 * MIB)))
    took = time.monotonic() - started
    kept_pace = asyncio.run(_post(app, steady(), _headers()))

    assert stalled.status_code == 408
    assert stalled.headers["Connection"] == "close"
    assert "KAVE_RECEIVER_BODY_MIN_RATE_BYTES" in stalled.json()["message"]
    # Behind its pace from grace + 1 KiB / 4 KiB/s = 0.55 s (the idle time, 0.5 s, first).
    assert 0.4 < took < 10, took
    assert kept_pace.status_code == 400  # read in full, then refused for its content
    assert _refusals(app, "too_slow").endswith(" 1.0")
    _assert_nothing_held(app)


def test_the_pace_allows_grace_then_the_minimum_rate() -> None:
    pace = BodyPace(idle_seconds=30.0, grace_seconds=10.0, min_rate=1000.0)
    # Nothing received: the grace is all there is.
    assert pace.wait_allowed(started=0.0, received=0, now=0.0) == 10.0
    assert pace.wait_allowed(started=0.0, received=0, now=10.0) == 0.0
    # 50 kB in: the body is on pace until 10 + 50 s, but waits at most the idle time.
    assert pace.wait_allowed(started=0.0, received=50_000, now=40.0) == 20.0
    assert pace.wait_allowed(started=0.0, received=50_000, now=5.0) == 30.0
    assert pace.wait_allowed(started=0.0, received=50_000, now=61.0) < 0
