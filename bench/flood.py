"""A connection flood against one real receiver process: connections that declare a huge
body and trickle it, while a HEAD probe runs and a correctly signed batch is sent.

    python -m bench.flood [--connections 50] [--declared-mib 100] [--piece 11] [--every 0.5]

Starts its own Redis, PostgreSQL database and one uvicorn receiver process with default
settings (as the other benches do, ``bench/stack.py``), then runs three rounds of
attacking connections (``--connections`` in the first two). Each sends headers
declaring ``--declared-mib`` MiB and a forged ``X-Mandrill-Signature``, then ``--piece``
bytes every ``--every`` seconds, until the server answers or closes:

* ``one address``: every connection from 127.0.0.2 (Linux routes all of 127/8 to lo);
* ``many addresses``: each from an address of its own (127.0.0.2, .3, ...);
* ``one address, past its cap``: ``KAVE_RECEIVER_MAX_REQUESTS_PER_CLIENT`` + 16
  connections from 127.0.0.2, so the cap refuses (429) those past it at once.

Meanwhile a thread sends HEAD every 50 ms and another samples the receiver's RSS, and a
correctly signed ~1 MB batch is posted from 127.0.0.1. Printed per round: idle and peak
RSS, HEAD p50/p99, the batch's status and time, each answer's count, and how long the
server took to close the attacking connections. Figures, not assertions:
``tests/receiver/test_connection_flood.py`` checks the same with small deadlines.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from bench import stack
from loadkit import disk, payloads
from loadkit import rss as proc_memory
from loadkit.flood import FloodThread, Outcome, attacker_sources
from loadkit.probes import HeadProbe, RssSampler, percentile
from shared.webhook import WEBHOOK_PATH

MIB = 1024 * 1024
# An inbound email with an attachment of this size is a ~1 MB signed POST.
ONE_MB_ATTACHMENT = 330_000


@dataclass
class RoundResult:
    name: str
    idle: int
    peak: int
    head: list[float]
    head_failures: int
    batch_status: int
    batch_seconds: float
    outcomes: list[Outcome]


def flood_round(
    base: str,
    pid: int,
    name: str,
    sources: list[str],
    batch: payloads.SignedBody,
    *,
    declared: int,
    piece: int,
    every: float,
    give_up: float,
) -> RoundResult:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    idle = proc_memory.status_bytes(pid, "VmRSS")
    exact = proc_memory.reset_peak(pid)
    probe, sampler = HeadProbe(base, interval=0.05), RssSampler(pid)
    threads = [threading.Thread(target=t.run, daemon=True) for t in (probe, sampler)]
    for thread in threads:
        thread.start()
    attack = FloodThread(host, int(port), sources, declared, piece, every, give_up)
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
    return RoundResult(
        name=name,
        idle=idle,
        peak=max(sampler.peak, hwm),
        head=probe.latencies,
        head_failures=probe.failures,
        batch_status=response.status_code,
        batch_seconds=batch_seconds,
        outcomes=outcomes,
    )


def report(result: RoundResult, batch_size: int) -> None:
    closed = [o.closed_after for o in result.outcomes if o.closed_after is not None]
    still_open = sum(1 for o in result.outcomes if o.closed_after is None)
    statuses = Counter(o.status for o in result.outcomes if o.status is not None)
    by_status: dict[int, list[float]] = {}
    for o in result.outcomes:
        if o.status is not None and o.closed_after is not None:
            by_status.setdefault(o.status, []).append(o.closed_after)
    head = result.head
    print(f"round: {result.name} ({len(result.outcomes)} connections)")
    print(
        f"  receiver RSS: idle {result.idle / MIB:.0f} MiB, peak {result.peak / MIB:.0f} MiB "
        f"(+{(result.peak - result.idle) / MIB:.1f} MiB; target < idle + 64 MiB)"
    )
    print(
        f"  HEAD every 50 ms: {len(head)} answered, {result.head_failures} failed; "
        f"p50 {percentile(head, 0.5) * 1000:.1f} ms, p99 {percentile(head, 0.99) * 1000:.1f} ms, "
        f"max {max(head, default=float('nan')) * 1000:.1f} ms (target p99 < 100 ms)"
    )
    print(
        f"  signed batch ({batch_size / 1e6:.2f} MB) from 127.0.0.1: {result.batch_status} "
        f"in {result.batch_seconds * 1000:.0f} ms"
    )
    answers = ", ".join(f"{status or 'no answer'}: {n}" for status, n in sorted(statuses.items()))
    print(f"  attacking connections answered: {answers}; still open at the end: {still_open}")
    for status, took in sorted(by_status.items()):
        print(
            f"    {status or 'no answer'}: closed after min {min(took):.2f} s, "
            f"median {statistics.median(took):.2f} s, max {max(took):.2f} s"
        )
    if closed:
        print(f"  all closed within {max(closed):.2f} s of their headers")


def run(connections: int, declared: int, piece: int, every: float, tmp: Path) -> int:
    from bench.run import services

    batch = payloads.sign(payloads.events_json([payloads.inbound_event(ONE_MB_ATTACHMENT)]))
    small = payloads.sign(payloads.email_events("8KB", seed=1))
    with services(tmp, need_s3=False) as found:
        settings = found.settings(log_level="WARNING")
        env = stack.child_env(settings)
        deadline = settings.receiver_body_grace_seconds + declared / float(
            settings.receiver_body_min_rate_bytes
        )
        print(
            f"receiver settings (defaults): max buffered "
            f"{settings.receiver_max_buffered_bytes / MIB:.0f} MiB, "
            f"{settings.receiver_max_requests_per_client} requests in flight per client, "
            f"idle {settings.receiver_body_idle_seconds:.0f} s, grace "
            f"{settings.receiver_body_grace_seconds:.0f} s, min rate "
            f"{settings.receiver_body_min_rate_bytes / 1024:.0f} KiB/s"
        )
        print(
            f"attack: {connections} connections declaring {declared / MIB:.0f} MiB, "
            f"{piece} bytes every {every} s (a body this slow is behind its pace after "
            f"the grace; one arriving in full would have until {deadline:.0f} s)"
        )
        give_up = settings.receiver_body_grace_seconds + settings.receiver_body_idle_seconds + 30
        with stack.uvicorn("receiver.app:create_app", env, tmp / "receiver.log", 1) as (
            base,
            process,
        ):
            assert httpx.post(base + WEBHOOK_PATH, content=small.body, headers=small.headers)
            assert httpx.post(base + WEBHOOK_PATH, content=batch.body, headers=batch.headers)
            time.sleep(0.5)
            # The third round: more connections from one address than it may have in flight.
            past_cap = settings.receiver_max_requests_per_client + 16
            for name, count, distinct in (
                ("one address", connections, False),
                ("many addresses", connections, True),
                ("one address, past its cap", past_cap, False),
            ):
                result = flood_round(
                    base,
                    process.pid,
                    name,
                    attacker_sources(count, distinct),
                    batch,
                    declared=declared,
                    piece=piece,
                    every=every,
                    give_up=give_up,
                )
                report(result, len(batch.body))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--declared-mib", type=float, default=100.0)
    parser.add_argument("--piece", type=int, default=11, help="bytes sent each time")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between pieces")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with disk.scratch("flood-", keep=args.keep) as tmp:
        if args.keep:
            print(f"scratch kept: {tmp}")
        return run(args.connections, int(args.declared_mib * MIB), args.piece, args.every, tmp)


if __name__ == "__main__":
    raise SystemExit(main())
