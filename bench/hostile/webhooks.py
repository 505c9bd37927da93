"""Hostile webhook bodies against a real receiver while a client sends HEAD every 100 ms.

One uvicorn receiver process (``--workers 1``) is sent hostile bodies (8 MB of ``&a``,
8 MB of ``%``, 100,000 fields, 8 MB of deeply nested JSON, in turn:
:mod:`loadkit.hostile_webhooks`) in three rounds:

* ``no-header``: no ``X-Mandrill-Signature`` (refused before the body is read);
* ``wrong-signature``: a signature that does not match, so the form scan and the HMAC run;
* ``flood``: ``limit + 10`` header-less bodies from one address, past the failure limit.

The first two are sent ``repeat`` times (10, 2 with ``--quick``), each time from new
client addresses (``X-Forwarded-For`` from a trusted proxy), so the limit does not decide
their answers. Meanwhile a thread sends ``HEAD`` every 100 ms and another samples the
receiver's RSS. Figures: HEAD p50/p99/max, the answers by status, and idle and peak RSS
against the bound idle + 3x the largest body. ``tests/receiver/test_hostile_webhooks.py``
checks the answers; this stage measures.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

from bench import stack
from bench.hostile import ReceiverStage
from loadkit import payloads
from loadkit import rss as proc_memory
from loadkit.hostile_webhooks import FORGED_SIGNATURE, FORM, MIB, hostile_bodies, post_raw
from loadkit.percentiles import percentile
from loadkit.probes import HeadProbe, RssSampler
from shared.webhook import WEBHOOK_PATH

COUNT = 20  # hostile bodies per round
SIZE = 8 * MIB  # of the large bodies
HEAD_P99_TARGET_MS = 100.0


@dataclass
class Round:
    name: str
    statuses: Counter[int] = field(default_factory=Counter)
    by_kind: dict[str, Counter[int]] = field(default_factory=dict)
    kind_seconds: dict[str, list[float]] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    unread: list[int] = field(default_factory=list)
    peak_rss: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "seconds_p50": statistics.median(self.seconds),
            "seconds_max": max(self.seconds),
            "bodies": len(self.unread),
            "unread_bytes": sum(self.unread),
            "peak_rss_bytes": self.peak_rss,
            "kinds": [
                {
                    "kind": kind,
                    "statuses": {str(s): n for s, n in sorted(counter.items())},
                    "seconds_p50": statistics.median(self.kind_seconds[kind]),
                    "seconds_max": max(self.kind_seconds[kind]),
                }
                for kind, counter in self.by_kind.items()
            ],
        }


def send_round(
    base: str, bodies: dict[str, bytes], count: int, headers: dict[str, str], into: Round
) -> None:
    kinds = list(bodies)
    for i in range(count):
        kind = kinds[i % len(kinds)]
        status, seconds, sent = post_raw(base, bodies[kind], headers)
        into.statuses[status] += 1
        into.by_kind.setdefault(kind, Counter())[status] += 1
        into.kind_seconds.setdefault(kind, []).append(seconds)
        into.seconds.append(seconds)
        into.unread.append(len(bodies[kind]) - sent)


def _client(address: str, **headers: str) -> dict[str, str]:
    return {"Content-Type": FORM, "X-Forwarded-For": address, **headers}


def run(stage: ReceiverStage) -> dict[str, Any]:
    repeat = 2 if stage.quick else 10
    settings = stage.settings_for(trusted_proxies="127.0.0.1/32", log_level="WARNING")
    bodies = hostile_bodies(SIZE)
    largest = max(len(body) for body in bodies.values())
    limit = int(settings.rate_limit_webhook_signature_failures.split("/")[0])
    env = stack.child_env(settings)
    with stack.uvicorn("receiver.app:create_app", env, stage.tmp / "webhooks-receiver.log", 1) as (
        base,
        process,
    ):
        small = payloads.sign(payloads.email_events("8KB", seed=1))
        httpx.post(base + WEBHOOK_PATH, content=small.body, headers=small.headers)
        time.sleep(0.5)
        idle = psutil.Process(process.pid).memory_info().rss
        exact_peak = proc_memory.reset_peak(process.pid)
        probe, sampler = HeadProbe(base), RssSampler(process.pid)
        threads = [threading.Thread(target=t.run, daemon=True) for t in (probe, sampler)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # a few HEADs with nothing else going on
        # Each repetition of a round comes from new addresses: 20 refusals a round stay
        # under the default limit (30/minute) of each.
        signed = {"X-Mandrill-Signature": FORGED_SIGNATURE}
        rounds = {name: Round(name) for name in ("no-header", "wrong-signature", "flood")}
        sampler.mark()
        for name, extra in (("no-header", {}), ("wrong-signature", signed)):
            for rep in range(repeat):
                address = f"203.0.113.{10 * (1 + len(extra)) + rep}"
                send_round(base, bodies, COUNT, _client(address, **extra), rounds[name])
            rounds[name].peak_rss = sampler.mark()
            stage.progress(f"  webhooks: {name}: {dict(rounds[name].statuses)}")
        flood = rounds["flood"]
        send_round(base, bodies, limit + 10, _client("203.0.113.99"), flood)
        flood.peak_rss = sampler.mark()
        time.sleep(0.5)
        probe.stop()
        sampler.stop()
        for thread in threads:
            thread.join()
        hwm = proc_memory.status_bytes(process.pid, "VmHWM") if exact_peak else None
        accepted = httpx.post(base + WEBHOOK_PATH, content=small.body, headers=small.headers)

    latencies = probe.latencies
    return {
        "count": COUNT,
        "repeat": repeat,
        "failure_limit": limit,
        "largest_body_bytes": largest,
        "rounds": [r.as_dict() for r in rounds.values()],
        "head_answered": len(latencies),
        "head_failed": probe.failures,
        "head_p50_ms": percentile(latencies, 0.5) * 1000,
        "head_p99_ms": percentile(latencies, 0.99) * 1000,
        "head_max_ms": max(latencies, default=float("nan")) * 1000,
        "idle_rss_bytes": idle,
        "peak_rss_bytes": max(sampler.peak, hwm or 0),
        "peak_exact": hwm is not None,
        "signed_batch_afterwards": accepted.status_code,
    }


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{s}: {n}" for s, n in statuses.items())


def section(data: dict[str, Any]) -> tuple[list[str], list[tuple[str, bool]]]:
    largest = data["largest_body_bytes"]
    lines = [
        f"### Hostile webhooks: {data['count']} bodies a round, the first two rounds "
        f"{data['repeat']}x from new addresses, largest {largest / MIB:.1f} MiB",
        "",
        "| round / body | answers | request s (p50 / max) | peak RSS | body bytes never read |",
        "|---|---|---|---|---|",
    ]
    for r in data["rounds"]:
        lines.append(
            f"| {r['name']} | {_statuses(r['statuses'])} | {r['seconds_p50']:.3f} / "
            f"{r['seconds_max']:.3f} | {r['peak_rss_bytes'] / MIB:.0f} MiB | "
            f"{r['unread_bytes'] / MIB:.0f} MiB of {r['bodies']} bodies |"
        )
        for kind in r["kinds"]:
            lines.append(
                f"| &nbsp; {kind['kind']} | {_statuses(kind['statuses'])} | "
                f"{kind['seconds_p50']:.3f} / {kind['seconds_max']:.3f} | | |"
            )
    idle, peak = data["idle_rss_bytes"], data["peak_rss_bytes"]
    bound = idle + 3 * largest
    lines += [
        "",
        f"HEAD every 100 ms: {data['head_answered']} answered, {data['head_failed']} failed; "
        f"p50 {data['head_p50_ms']:.1f} ms, p99 {data['head_p99_ms']:.1f} ms, "
        f"max {data['head_max_ms']:.1f} ms. Receiver RSS: idle {idle / MIB:.0f} MiB, peak "
        f"{peak / MIB:.0f} MiB (+{(peak - idle) / MIB:.0f} MiB"
        + ("" if data["peak_exact"] else "; sampled every 5 ms, VmHWM not resettable here")
        + f"). A correctly signed batch afterwards: {data['signed_batch_afterwards']}.",
    ]
    checks = [
        (
            f"hostile webhooks: HEAD p99 < {HEAD_P99_TARGET_MS:.0f} ms "
            f"(got {data['head_p99_ms']:.1f} ms)",
            data["head_p99_ms"] < HEAD_P99_TARGET_MS,
        ),
        (
            f"hostile webhooks: receiver peak RSS <= idle + 3x the largest body "
            f"(got idle + {(peak - idle) / MIB:.0f} MiB, bound {(bound - idle) / MIB:.0f} MiB)",
            peak <= bound,
        ),
        (
            "hostile webhooks: a signed batch accepted afterwards "
            f"(got {data['signed_batch_afterwards']})",
            data["signed_batch_afterwards"] == 200,
        ),
    ]
    return lines, checks
