"""Hostile webhook bodies against a real receiver while a client sends HEAD every 100 ms.

    python -m bench.hostile_webhooks [--count 20] [--size-mb 8]

Starts its own Redis, PostgreSQL database and one uvicorn receiver process (as the bench
does, ``bench/stack.py``), then sends ``--count`` hostile bodies (8 MB of ``&a``, 8 MB of
``%``, 100,000 fields, 8 MB of deeply nested JSON, in turn) in three rounds:

* ``no-header``: no ``X-Mandrill-Signature`` (refused before the body is read);
* ``wrong-signature``: a signature that does not match, so the form scan and the HMAC run;
* ``flood``: ``limit + 10`` header-less bodies from one address, past the failure limit.

The first two are sent ``--repeat`` times, each time from new client addresses
(``X-Forwarded-For`` from a trusted proxy), so the limit does not decide their answers.
Meanwhile a thread sends ``HEAD`` every 100 ms and another samples the receiver's RSS.
It prints HEAD p50/p99/max, the refusals by status, and idle and peak RSS against the
bound idle + 3x the largest body. Figures, not assertions:
``tests/receiver/test_hostile_webhooks.py`` checks the answers; this script measures.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import structlog

from bench import stack
from loadkit import payloads
from loadkit import rss as proc_memory
from loadkit.hostile_webhooks import FORGED_SIGNATURE, FORM, MIB, hostile_bodies, post_raw
from loadkit.probes import HeadProbe, RssSampler, percentile
from shared.webhook import WEBHOOK_PATH


@dataclass
class Round:
    name: str
    statuses: Counter[int] = field(default_factory=Counter)
    by_kind: dict[str, Counter[int]] = field(default_factory=dict)
    kind_seconds: dict[str, list[float]] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    unread: list[int] = field(default_factory=list)
    peak_rss: int = 0


def send_round(
    base: str,
    name: str,
    bodies: dict[str, bytes],
    count: int,
    headers: dict[str, str],
    *,
    kinds: list[str] | None = None,
    into: Round | None = None,
) -> Round:
    result = into or Round(name)
    kinds = kinds or list(bodies)
    for i in range(count):
        kind = kinds[i % len(kinds)]
        status, seconds, sent = post_raw(base, bodies[kind], headers)
        result.statuses[status] += 1
        result.by_kind.setdefault(kind, Counter())[status] += 1
        result.kind_seconds.setdefault(kind, []).append(seconds)
        result.seconds.append(seconds)
        result.unread.append(len(bodies[kind]) - sent)
    return result


def _client(address: str, **headers: str) -> dict[str, str]:
    return {"Content-Type": FORM, "X-Forwarded-For": address, **headers}


def run(count: int, size: int, repeat: int, tmp: Path) -> int:
    from bench.run import services

    bodies = hostile_bodies(size)
    largest = max(len(body) for body in bodies.values())
    with services(tmp, need_s3=False) as found:
        settings = found.settings(trusted_proxies="127.0.0.1/32", log_level="WARNING")
        limit = int(settings.rate_limit_webhook_signature_failures.split("/")[0])
        env = stack.child_env(settings)
        with stack.uvicorn("receiver.app:create_app", env, tmp / "receiver.log", 1) as (
            base,
            process,
        ):
            small = payloads.sign(payloads.email_events("8KB", seed=1))
            assert httpx.post(base + WEBHOOK_PATH, content=small.body, headers=small.headers)
            time.sleep(0.5)
            idle = psutil.Process(process.pid).memory_info().rss
            exact_peak = proc_memory.reset_peak(process.pid)
            probe, sampler = HeadProbe(base), RssSampler(process.pid)
            threads = [threading.Thread(target=t.run, daemon=True) for t in (probe, sampler)]
            for thread in threads:
                thread.start()
            time.sleep(0.5)  # a few HEADs with nothing else going on
            # Each repetition of a round comes from new addresses: 20 refusals a round
            # stay under the default limit (30/minute) of each.
            signed = {"X-Mandrill-Signature": FORGED_SIGNATURE}
            rounds = {name: Round(name) for name in ("no-header", "wrong-signature", "flood")}
            sampler.mark()
            for name, extra in (("no-header", {}), ("wrong-signature", signed)):
                for rep in range(repeat):
                    address = f"203.0.113.{10 * (1 + len(extra)) + rep}"
                    send_round(
                        base, name, bodies, count, _client(address, **extra), into=rounds[name]
                    )
                rounds[name].peak_rss = sampler.mark()
            flood = rounds["flood"]
            send_round(base, "flood", bodies, limit + 10, _client("203.0.113.99"), into=flood)
            flood.peak_rss = sampler.mark()
            time.sleep(0.5)
            probe.stop()
            sampler.stop()
            for thread in threads:
                thread.join()
            hwm = proc_memory.status_bytes(process.pid, "VmHWM") if exact_peak else None
            accepted = httpx.post(base + WEBHOOK_PATH, content=small.body, headers=small.headers)

    peak = max(sampler.peak, hwm or 0)
    bound = idle + 3 * largest
    lat = probe.latencies
    print(
        f"hostile webhooks: {count} bodies per round ({repeat}x each, the flood once), "
        f"largest {largest / MIB:.1f} MiB"
    )
    print(
        f"{'round':<16} {'statuses':<22} {'request s (p50 / max)':<22} "
        f"{'peak RSS':<10} body bytes never read"
    )
    for r in rounds.values():
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(r.statuses.items()))
        timing = f"{statistics.median(r.seconds):.3f} / {max(r.seconds):.3f}"
        unread = f"{sum(r.unread) / MIB:.0f} MiB of {len(r.unread)} bodies"
        rss = f"{r.peak_rss / MIB:.0f} MiB"
        print(f"{r.name:<16} {statuses:<22} {timing:<22} {rss:<10} {unread}")
        for kind, counter in r.by_kind.items():
            took = r.kind_seconds[kind]
            answers = str(dict(sorted(counter.items())))
            print(f"  {kind:<14} {answers:<22} {statistics.median(took):.3f} / {max(took):.3f}")
    print(
        f"HEAD every 100 ms: {len(lat)} answered, {probe.failures} failed; "
        f"p50 {percentile(lat, 0.5) * 1000:.1f} ms, p99 {percentile(lat, 0.99) * 1000:.1f} ms, "
        f"max {max(lat, default=float('nan')) * 1000:.1f} ms (target p99 < 100 ms)"
    )
    print(
        f"receiver RSS: idle {idle / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB "
        f"(+{(peak - idle) / MIB:.0f} MiB; bound idle + 3 x {largest / MIB:.0f} MiB = "
        f"{bound / MIB:.0f} MiB: {'within' if peak <= bound else 'OVER'})"
        + ("" if hwm else "; sampled every 5 ms, VmHWM not resettable here")
    )
    print(f"a correctly signed batch afterwards: {accepted.status_code}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="hostile bodies per round")
    parser.add_argument("--size-mb", type=float, default=8.0, help="size of the large bodies")
    parser.add_argument("--repeat", type=int, default=10, help="times each round is sent")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tmp = Path(tempfile.mkdtemp(prefix="kave-hostile-"))
    try:
        return run(args.count, int(args.size_mb * MIB), args.repeat, tmp)
    finally:
        if args.keep:
            print(f"scratch kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
