"""A connection flood against one real receiver process: connections that declare a huge
body and trickle it, while a HEAD probe runs and a correctly signed batch is sent.

One uvicorn receiver process with default settings, then three rounds of attacking
connections (:mod:`loadkit.flood`; 50 in the first two, 10 with ``--quick``). Each sends
headers declaring 100 MiB and a forged ``X-Mandrill-Signature``, then 11 bytes every
0.5 s, until the server answers or closes:

* ``one address``: every connection from 127.0.0.2 (Linux routes all of 127/8 to lo);
* ``many addresses``: each from an address of its own (127.0.0.2, .3, ...);
* ``one address, past its cap``: ``KAVE_RECEIVER_MAX_REQUESTS_PER_CLIENT`` + 16
  connections from 127.0.0.2, so the cap refuses (429) those past it at once.

Meanwhile a thread sends HEAD every 50 ms and another samples the receiver's RSS, and a
correctly signed ~1 MB batch is posted from 127.0.0.1. Figures per round: idle and peak
RSS, HEAD p50/p99, the batch's status and time, each answer's count, and how long the
server took to close the attacking connections. ``tests/receiver/test_connection_flood.py``
checks the same with small deadlines.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from typing import Any

import httpx

from bench import stack
from bench.hostile import ReceiverStage
from loadkit import payloads
from loadkit import rss as proc_memory
from loadkit.flood import FloodThread, Outcome, attacker_sources
from loadkit.percentiles import percentile
from loadkit.probes import HeadProbe, RssSampler
from shared.webhook import WEBHOOK_PATH

MIB = 1024 * 1024
DECLARED = 100 * MIB  # what each attacking connection's Content-Length claims
PIECE = 11  # bytes sent each time
EVERY = 0.5  # seconds between pieces
# An inbound email with an attachment of this size is a ~1 MB signed POST.
ONE_MB_ATTACHMENT = 330_000
RSS_TARGET = 64 * MIB  # over idle
HEAD_P99_TARGET_MS = 100.0


def flood_round(
    base: str,
    pid: int,
    sources: list[str],
    batch: payloads.SignedBody,
    *,
    give_up: float,
) -> dict[str, Any]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    idle = proc_memory.status_bytes(pid, "VmRSS")
    exact = proc_memory.reset_peak(pid)
    probe, sampler = HeadProbe(base, interval=0.05), RssSampler(pid)
    threads = [threading.Thread(target=t.run, daemon=True) for t in (probe, sampler)]
    for thread in threads:
        thread.start()
    attack = FloodThread(host, int(port), sources, DECLARED, PIECE, EVERY, give_up)
    attack.start()
    time.sleep(1.0)  # every connection open and trickling
    started = time.perf_counter()
    response = httpx.post(
        base + WEBHOOK_PATH, content=batch.body, headers=batch.headers, timeout=60
    )
    batch_seconds = time.perf_counter() - started
    outcomes = attack.join()
    time.sleep(0.3)
    probe.stop()
    sampler.stop()
    for thread in threads:
        thread.join()
    hwm = proc_memory.status_bytes(pid, "VmHWM") if exact else 0
    head = probe.latencies
    return {
        "connections": len(outcomes),
        "idle_rss_bytes": idle,
        "peak_rss_bytes": max(sampler.peak, hwm),
        "head_answered": len(head),
        "head_failed": probe.failures,
        "head_p50_ms": percentile(head, 0.5) * 1000,
        "head_p99_ms": percentile(head, 0.99) * 1000,
        "head_max_ms": max(head, default=float("nan")) * 1000,
        "batch_status": response.status_code,
        "batch_ms": batch_seconds * 1000,
        **_closed(outcomes),
    }


def _closed(outcomes: list[Outcome]) -> dict[str, Any]:
    """The answers the attacking connections got (0: none), and when they were closed."""
    by_status: dict[int, list[float]] = {}
    for o in outcomes:
        if o.status is not None and o.closed_after is not None:
            by_status.setdefault(o.status, []).append(o.closed_after)
    return {
        "answers": {
            str(status): n
            for status, n in sorted(
                Counter(o.status for o in outcomes if o.status is not None).items()
            )
        },
        "still_open": sum(1 for o in outcomes if o.closed_after is None),
        "closed_after_s": {
            str(status): [min(took), statistics.median(took), max(took)]
            for status, took in sorted(by_status.items())
        },
    }


def run(stage: ReceiverStage) -> dict[str, Any]:
    connections = 10 if stage.quick else 50
    batch = payloads.sign(payloads.events_json([payloads.inbound_event(ONE_MB_ATTACHMENT)]))
    small = payloads.sign(payloads.email_events("8KB", seed=1))
    settings = stage.settings_for(log_level="WARNING")
    env = stack.child_env(settings)
    give_up = settings.receiver_body_grace_seconds + settings.receiver_body_idle_seconds + 30
    rounds: list[dict[str, Any]] = []
    with stack.uvicorn("receiver.app:create_app", env, stage.tmp / "flood-receiver.log", 1) as (
        base,
        process,
    ):
        httpx.post(base + WEBHOOK_PATH, content=small.body, headers=small.headers)
        httpx.post(base + WEBHOOK_PATH, content=batch.body, headers=batch.headers)
        time.sleep(0.5)
        # The third round: more connections from one address than it may have in flight.
        past_cap = settings.receiver_max_requests_per_client + 16
        for name, count, distinct in (
            ("one address", connections, False),
            ("many addresses", connections, True),
            ("one address, past its cap", past_cap, False),
        ):
            result = flood_round(
                base, process.pid, attacker_sources(count, distinct), batch, give_up=give_up
            )
            rounds.append({"name": name, **result})
            stage.progress(f"  flood: {name}: {result['answers']}")
    return {
        "settings": {
            "max_buffered_bytes": settings.receiver_max_buffered_bytes,
            "max_requests_per_client": settings.receiver_max_requests_per_client,
            "body_idle_seconds": settings.receiver_body_idle_seconds,
            "body_grace_seconds": settings.receiver_body_grace_seconds,
            "body_min_rate_bytes": settings.receiver_body_min_rate_bytes,
        },
        "declared_bytes": DECLARED,
        "piece_bytes": PIECE,
        "every_seconds": EVERY,
        "batch_bytes": len(batch.body),
        "rounds": rounds,
    }


def section(data: dict[str, Any]) -> tuple[list[str], list[tuple[str, bool]]]:
    s = data["settings"]
    lines = [
        f"### Connection flood: each connection declares {data['declared_bytes'] / MIB:.0f} "
        f"MiB and sends {data['piece_bytes']} bytes every {data['every_seconds']} s",
        "",
        f"Receiver (defaults): max buffered {s['max_buffered_bytes'] / MIB:.0f} MiB, "
        f"{s['max_requests_per_client']} requests in flight per client, idle "
        f"{s['body_idle_seconds']:.0f} s, grace {s['body_grace_seconds']:.0f} s, min rate "
        f"{s['body_min_rate_bytes'] / 1024:.0f} KiB/s. HEAD every 50 ms; a signed "
        f"{data['batch_bytes'] / 1e6:.2f} MB batch from 127.0.0.1 during each round.",
        "",
        "| round | connections | answers (closed after s: min / median / max) | still open "
        "| RSS idle / peak | HEAD p50 / p99 ms | signed batch |",
        "|---|---|---|---|---|---|---|",
    ]
    checks: list[tuple[str, bool]] = []
    for r in data["rounds"]:
        answers = "; ".join(
            f"{status if status != '0' else 'no answer'}: {n} "
            f"({' / '.join(f'{t:.2f}' for t in r['closed_after_s'].get(status, []))})"
            for status, n in r["answers"].items()
        )
        grew = r["peak_rss_bytes"] - r["idle_rss_bytes"]
        lines.append(
            f"| {r['name']} | {r['connections']} | {answers} | {r['still_open']} | "
            f"{r['idle_rss_bytes'] / MIB:.0f} / {r['peak_rss_bytes'] / MIB:.0f} MiB "
            f"(+{grew / MIB:.1f}) | {r['head_p50_ms']:.1f} / {r['head_p99_ms']:.1f} | "
            f"{r['batch_status']} in {r['batch_ms']:.0f} ms |"
        )
        checks += [
            (
                f"flood, {r['name']}: peak RSS < idle + {RSS_TARGET / MIB:.0f} MiB "
                f"(got +{grew / MIB:.1f} MiB)",
                grew < RSS_TARGET,
            ),
            (
                f"flood, {r['name']}: HEAD p99 < {HEAD_P99_TARGET_MS:.0f} ms "
                f"(got {r['head_p99_ms']:.1f} ms)",
                r["head_p99_ms"] < HEAD_P99_TARGET_MS,
            ),
            (
                f"flood, {r['name']}: the signed batch accepted (got {r['batch_status']})",
                r["batch_status"] == 200,
            ),
        ]
    return lines, checks
