"""A connection flood and a rotating X-Forwarded-For, against a real uvicorn receiver
started with the dev stack's command line (``kave.devstack``: the one ``kave run`` and
the benchmarks use).

The figures with default settings (idle and peak RSS, HEAD p50/p99, how long the
attacking connections lived) are printed by the bench's ``flood`` stage (``python -m
bench.run --only flood``); here the deadlines are small so that the test runs in seconds,
and only generous bounds are asserted.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from kave import devstack
from loadkit.flood import FloodThread, attacker_sources
from loadkit.hostile_webhooks import FORGED_SIGNATURE
from loadkit.percentiles import percentile
from loadkit.probes import HeadProbe, RssSampler
from shared.settings import Settings
from tests.services import REPO, child_env, derive_settings
from tests.webhooks import WEBHOOK_PATH, fixture_events, signed_form

MIB = 1024 * 1024
FORM = "application/x-www-form-urlencoded"
# Small pace settings: a trickling body is behind its pace GRACE seconds in.
GRACE = 2.0
IDLE = 2.0
MIN_RATE = 4096


@dataclass
class Receiver:
    base: str
    pid: int

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])


@pytest.fixture
def flood_settings(base_settings: Settings) -> Settings:
    return derive_settings(
        base_settings,
        queue_name=f"kave-flood-{uuid.uuid4().hex[:8]}",
        receiver_body_grace_seconds=GRACE,
        receiver_body_idle_seconds=IDLE,
        receiver_body_min_rate_bytes=MIN_RATE,
        # Every attacking connection from 127.0.0.2 is read, so it is the buffer and the
        # pace that are tested here (the per-client cap is tested in test_in_flight.py).
        receiver_max_requests_per_client=100,
        log_level="WARNING",
    )


@pytest.fixture
def flood_receiver(flood_settings: Settings, tmp_path: Path) -> Iterator[Receiver]:
    with devstack.uvicorn_server(
        "receiver.app:create_app", child_env(flood_settings), tmp_path / "receiver.log", cwd=REPO
    ) as (base, process):
        yield Receiver(base, process.pid)


def _one_mb_batch() -> tuple[bytes, dict[str, str]]:
    events = json.loads(fixture_events("inbound.json"))
    events[0]["msg"]["text"] = "x" * 1_000_000
    return signed_form(json.dumps(events))


def test_a_trickling_flood_holds_no_memory_and_is_dropped_while_real_mail_gets_in(
    flood_receiver: Receiver,
) -> None:
    body, headers = _one_mb_batch()
    url = flood_receiver.base + WEBHOOK_PATH
    assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 200
    time.sleep(0.3)
    idle = psutil.Process(flood_receiver.pid).memory_info().rss
    probe, sampler = HeadProbe(flood_receiver.base, interval=0.05), RssSampler(flood_receiver.pid)
    helpers = [threading.Thread(target=t.run, daemon=True) for t in (probe, sampler)]
    for helper in helpers:
        helper.start()
    # 50 connections from 127.0.0.2, each declaring 100 MiB (the default body cap, so it
    # is not refused for its size) and sending 11 bytes every 0.25 s: far below MIN_RATE.
    attack = FloodThread(
        "127.0.0.1",
        flood_receiver.port,
        attacker_sources(50, distinct=False),
        declared=100 * MIB,
        piece=11,
        every=0.25,
        give_up=GRACE + IDLE + 20,
    )
    attack.start()
    try:
        time.sleep(1.0)  # every connection has sent its headers and a few pieces
        accepted = httpx.post(url, content=body, headers=headers, timeout=30)
        # The same batch without a Content-Length (chunked), in pieces of 64 KiB.
        pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))
        chunked = httpx.post(url, content=pieces, headers=headers, timeout=30)
        outcomes = attack.join()
    finally:
        probe.stop()
        sampler.stop()
        for helper in helpers:
            helper.join()

    assert accepted.status_code == 200, accepted.text
    assert chunked.status_code == 200, chunked.text
    assert chunked.request.headers.get("Transfer-Encoding") == "chunked"
    assert len(outcomes) == 50
    # Every attacking connection was sent more than one piece (the old buffer was sized
    # from the declared length at the second piece), answered 408 and closed by the server
    # once it fell behind its pace: GRACE seconds in, plus generous slack for this machine.
    assert all(outcome.sent > 11 for outcome in outcomes)
    assert [o.status for o in outcomes] == [408] * 50
    lived = [o.closed_after for o in outcomes]
    assert all(seconds is not None and seconds < GRACE + 4.0 for seconds in lived), lived
    grown = sampler.peak - idle
    print(f"flood: RSS idle {idle / MIB:.0f} MiB, peak +{grown / MIB:.1f} MiB")
    assert grown < 64 * MIB, f"+{grown / MIB:.0f} MiB"
    assert probe.failures == 0
    assert len(probe.latencies) >= 10
    p99 = percentile(probe.latencies, 0.99)
    print(f"HEAD during the flood: {len(probe.latencies)} answered, p99 {p99 * 1000:.1f} ms")
    assert p99 < 1.0  # a sanity bound; bench/hostile/flood.py measures the real figure


def test_a_rotating_forwarded_for_from_loopback_is_still_rate_limited(
    base_settings: Settings, tmp_path: Path
) -> None:
    """uvicorn's own proxy-header handling would make each POST a new client; the dev
    stack runs it with --no-proxy-headers, and KAVE_TRUSTED_PROXIES (unset) decides."""
    settings = derive_settings(
        base_settings,
        queue_name=f"kave-xff-{uuid.uuid4().hex[:8]}",
        rate_limit_webhook_signature_failures="5/minute",
    )
    body, headers = signed_form(fixture_events("send.json"))
    with devstack.uvicorn_server(
        "receiver.app:create_app", child_env(settings), tmp_path / "receiver.log", cwd=REPO
    ) as (base, _process):
        statuses = [
            httpx.post(
                base + WEBHOOK_PATH,
                content=body,
                headers={
                    **headers,
                    "X-Mandrill-Signature": FORGED_SIGNATURE,
                    "X-Forwarded-For": f"203.0.113.{n}",
                },
            ).status_code
            for n in range(1, 9)
        ]
    assert statuses == [401] * 5 + [429] * 3
