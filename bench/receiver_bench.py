"""Receiver throughput and latency under wrk, next to the bare-FastAPI ceiling.

Both apps are served by the same uvicorn command line (``bench.stack.uvicorn_command``),
both are up for the whole measurement, and wrk (32 connections, the same signed body)
loads them in alternating rounds: ceiling, receiver, ceiling, receiver... On a noisy
machine a burst of someone else's load then hits both columns alike instead of one.

Besides requests/s and latency, the CPU time the server processes used per request is
read from /proc (psutil): it is what the throughput ratio comes down to when the machine
is the limit, and it moves much less with background load than requests/s do.

No worker consumes during these runs, so a drainer empties the Redis database every
quarter second (``FLUSHDB ASYNC``), as the workers would by taking the tasks and deleting
the bodies: without it the dataset grows by up to 100 MB/s and Redis spends the run
rewriting its append-only file, which would measure the benchmark rather than the
receiver. AOF (``everysec``) stays on, as in production.

Redis's own latency monitor records every main-thread stall of 5 ms or more during the
receiver's rounds (``LATENCY LATEST``: writing the AOF, forking for its rewrite): a
webhook waits on Redis, so these show in its p99, and the report prints the largest of
each kind next to the table.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from bench.stack import REPO, tree_cpu, uvicorn
from loadkit import payloads
from shared.webhook import WEBHOOK_PATH

LUA = REPO / "bench" / "post.lua"
CONNECTIONS = 32
# Redis stalls recorded by its latency monitor: this long or longer.
REDIS_STALL_THRESHOLD_MS = 5


@dataclass
class WrkRun:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_seconds: float  # user + system of the server processes during the run
    # Redis's longest main-thread stall of each kind during the run (ms), for a server
    # that writes to it; None when not recorded.
    redis_stalls_ms: dict[str, int] | None = None


def wrk(
    url: str,
    body_file: Path,
    signature: str,
    *,
    seconds: float,
    connections: int = CONNECTIONS,
    threads: int = 2,
) -> dict[str, Any]:
    env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_SIGNATURE": signature}
    command = [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
        "--timeout", "10s", "-s", str(LUA), url,
    ]  # fmt: skip
    out = subprocess.run(  # noqa: S603 - our own command line
        command, env=env, capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("BENCH_RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
    return result


@dataclass
class Server:
    name: str
    base: str
    process: psutil.Process
    redis_url: str | None = None  # drained while loaded
    store_dir: Path | None = None

    def run(self, body_file: Path, signature: str, seconds: float) -> WrkRun:
        stalls: dict[str, int] | None = None
        with ExitStack() as stack:
            if self.redis_url:
                stack.enter_context(drained(self.redis_url))
                stalls = stack.enter_context(redis_stalls(self.redis_url))
            before = tree_cpu(self.process)
            raw = wrk(self.base + WEBHOOK_PATH, body_file, signature, seconds=seconds)
            cpu = tree_cpu(self.process) - before
        if self.redis_url:
            _reset(self.redis_url, self.store_dir)
        errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
        return WrkRun(
            requests=raw["requests"],
            seconds=raw["duration_us"] / 1e6,
            p50_ms=raw["p50_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            errors=errors,
            cpu_seconds=cpu,
            redis_stalls_ms=stalls,
        )


@dataclass
class Series:
    """Several rounds of one server at one size."""

    runs: list[WrkRun] = field(default_factory=list)

    @property
    def rps(self) -> float:
        seconds = sum(r.seconds for r in self.runs)
        return sum(r.requests for r in self.runs) / seconds if seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs)

    @property
    def p99_worst_ms(self) -> float:
        return max(r.p99_ms for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    @property
    def cpu_ms_per_request(self) -> float:
        requests = sum(r.requests for r in self.runs)
        return 1000 * sum(r.cpu_seconds for r in self.runs) / requests if requests else 0.0

    @property
    def redis_stalls_ms(self) -> dict[str, int] | None:
        """The longest Redis stall of each kind over the rounds that recorded them."""
        recorded = [run.redis_stalls_ms for run in self.runs if run.redis_stalls_ms is not None]
        if not recorded:
            return None
        longest: dict[str, int] = {}
        for stalls in recorded:
            for kind, ms in stalls.items():
                longest[kind] = max(ms, longest.get(kind, 0))
        return longest

    @property
    def rps_spread(self) -> tuple[float, float]:
        rates = [r.requests / r.seconds for r in self.runs if r.seconds]
        return (min(rates), max(rates)) if rates else (0.0, 0.0)


@dataclass
class ReceiverRow:
    size: str
    body_bytes: int
    kave: Series
    ceiling: Series

    @property
    def ratio(self) -> float:
        return self.kave.rps / self.ceiling.rps if self.ceiling.rps else 0.0

    def as_dict(self) -> dict[str, Any]:
        def series(s: Series) -> dict[str, Any]:
            return {
                "rps": round(s.rps, 1),
                "p50_ms": round(s.p50_ms, 2),
                "p99_ms": round(s.p99_ms, 2),
                "p99_worst_ms": round(s.p99_worst_ms, 2),
                "errors": s.errors,
                "cpu_ms_per_request": round(s.cpu_ms_per_request, 3),
                "redis_stalls_ms": s.redis_stalls_ms,
                "rounds": [r.__dict__ for r in s.runs],
            }

        return {
            "size": self.size,
            "body_bytes": self.body_bytes,
            "ratio": round(self.ratio, 4),
            "kave": series(self.kave),
            "ceiling": series(self.ceiling),
        }


@contextmanager
def drained(redis_url: str, interval: float = 0.25) -> Iterator[None]:
    """Empty the database every ``interval`` seconds while the block runs."""
    stop = threading.Event()
    client = redis.Redis.from_url(redis_url)

    def drain() -> None:
        while not stop.wait(interval):
            client.flushdb(asynchronous=True)

    thread = threading.Thread(target=drain, name="bench-drainer", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        client.close()


@contextmanager
def redis_stalls(redis_url: str) -> Iterator[dict[str, int] | None]:
    """The longest stall of each kind Redis's latency monitor records while the block
    runs (ms), filled in when it ends; None where the monitor cannot be set (a Redis
    given by KAVE_BENCH_REDIS_URL may refuse CONFIG SET)."""
    client = redis.Redis.from_url(redis_url)
    found: dict[str, int] = {}
    try:
        client.config_set("latency-monitor-threshold", REDIS_STALL_THRESHOLD_MS)
        client.latency_reset()
    except redis.ResponseError:
        client.close()
        yield None
        return
    try:
        yield found
        # Each entry: event name, time of the latest, latest ms, longest ms since reset.
        for name, _, _, longest in client.latency_latest():
            kind = name.decode() if isinstance(name, bytes) else str(name)
            found[kind] = int(longest)
    finally:
        client.close()


def _reset(redis_url: str, store_dir: Path | None) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    if store_dir is not None and store_dir.exists():
        shutil.rmtree(store_dir, ignore_errors=True)


def _check_accepted(base: str, signed: payloads.SignedBody) -> None:
    response = httpx.post(
        base + WEBHOOK_PATH, content=signed.body, headers=signed.headers, timeout=30
    )
    if response.status_code != 200:
        raise RuntimeError(f"{base} answered {response.status_code}: {response.text[:300]}")


def write_bodies(tmp: Path, sizes: list[str]) -> dict[str, tuple[Path, payloads.SignedBody]]:
    bodies: dict[str, tuple[Path, payloads.SignedBody]] = {}
    for size in sizes:
        signed = payloads.sign(payloads.email_events(size, seed=1))
        path = tmp / f"body-{size}.form"
        path.write_bytes(signed.body)
        bodies[size] = (path, signed)
    return bodies


def run(
    kave_env: dict[str, str],
    tmp: Path,
    *,
    sizes: list[str],
    seconds: float,
    rounds: int,
    warmup: float,
    redis_url: str,
    store_dir: Path,
    workers: int = 2,
    progress: Any = print,
) -> list[ReceiverRow]:
    bodies = write_bodies(tmp, sizes)
    ceiling_env = {k: v for k, v in kave_env.items() if not k.startswith("KAVE_")}
    rows: list[ReceiverRow] = []
    with (
        uvicorn("bench.ceiling_app:create_app", ceiling_env, tmp / "ceiling.log", workers) as c,
        uvicorn("receiver.app:create_app", kave_env, tmp / "receiver.log", workers) as k,
    ):
        ceiling = Server("ceiling", c[0], psutil.Process(c[1].pid))
        kave = Server("kave", k[0], psutil.Process(k[1].pid), redis_url, store_dir)
        for size in sizes:
            path, signed = bodies[size]
            signature = signed.headers["X-Mandrill-Signature"]
            for server in (ceiling, kave):
                _check_accepted(server.base, signed)
                if warmup:
                    server.run(path, signature, warmup)
            row = ReceiverRow(size, len(signed.body), Series(), Series())
            for _ in range(rounds):
                row.ceiling.runs.append(ceiling.run(path, signature, seconds))
                time.sleep(0.3)
                row.kave.runs.append(kave.run(path, signature, seconds))
                time.sleep(0.3)
            progress(
                f"  receiver {size}: kave {row.kave.rps:,.0f}/s, ceiling {row.ceiling.rps:,.0f}/s"
                f" ({row.ratio:.1%}); kave p99 {row.kave.p99_ms:.1f} ms"
            )
            rows.append(row)
    return rows
