"""What the hand-off costs the workers: CPU per email with dispatch off and on.

``python -m bench.handoff_bench [--emails N] [--rounds R]`` (not part of ``make bench``'s default
stages; BENCHMARKS.md records its figure). One worker process (``--concurrency 1``) gets
N distinct 8 KB emails enqueued exactly as the receiver enqueues them, in each of three
modes, the modes alternating for R rounds (figures: medians, and each round's ratio):

- ``off``: no routes file (the derived fields are still computed: they are part of parsing);
- ``celery``: one catch-all route to a Celery handler task (published to a queue nobody
  consumes, so only the publishing is measured);
- ``http``: one catch-all route to an HTTP handler (a threaded server in this process
  answering 204): the signed POST, its claim and its record.

CPU is the worker's process tree (main process and pool child, user + system) from
before the first enqueue until every delivery is processed and, with hand-off on, every
dispatch delivered. The ratio is (on - off) / off, per email. It also times the derived
fields alone, in this process, against parsing the same event.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import structlog
from sqlalchemy import func, select

from bench import payloads, stack, worker_bench
from bench.run import services
from shared.models import Dispatch, DispatchStatus
from shared.settings import Settings

# Not KAVE_-prefixed: child_env passes it through to the worker.
SECRET_ENV = "BENCH_HANDOFF_SECRET"  # noqa: S105 - the name of a variable


class _Answer204(BaseHTTPRequestHandler):
    # Keep-alive, as a platform's server would: a reconnect per POST is not the hand-off's cost.
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def tree_cpu(process: psutil.Process) -> float:
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def routes_file(tmp: Path, mode: str, url: str) -> Path | None:
    if mode == "off":
        return None
    handler: dict[str, Any] = (
        {"celery": {"task": "kave.handlers.bench", "queue": "kave-bench-platform"}}
        if mode == "celery"
        else {"http": {"url": url, "secret_env": SECRET_ENV, "timeout_seconds": 5}}
    )
    path = tmp / f"routes-{mode}.json"
    path.write_text(json.dumps({"routes": [{"name": "all", "handler": handler}]}))
    return path


def wait_dispatched(settings: Settings, expected: int) -> None:
    engine = worker_bench.engine_for(settings)

    def done() -> bool:
        with engine.connect() as conn:
            count = conn.scalar(
                select(func.count())
                .select_from(Dispatch)
                .where(Dispatch.status == DispatchStatus.DELIVERED)
            )
        return (count or 0) >= expected

    stack.wait_until(done, 300, "dispatches delivered", 0.05)
    engine.dispose()


def measure(settings: Settings, tmp: Path, emails: int, seed: int, mode: str) -> float:
    """CPU seconds per email of one worker process tree."""
    engine = worker_bench.engine_for(settings)
    log = tmp / f"worker-{mode}.log"
    env = stack.child_env(settings)
    with stack.celery_worker("worker.main", settings.queue_name, env, log, 1) as process:
        # Warm up: database pool, object store, route table, HTTP client.
        worker_bench.measure_kave(settings, engine, worker_bench.email_bodies("8KB", 4, seed))
        with engine.begin() as conn:
            delivered_before = conn.scalar(select(func.count()).select_from(Dispatch)) or 0
        if mode != "off":
            wait_dispatched(settings, delivered_before)
        bodies = worker_bench.email_bodies("8KB", emails, seed + 100)
        tree = psutil.Process(process.pid)
        before = tree_cpu(tree)
        worker_bench.measure_kave(settings, engine, bodies)
        if mode != "off":
            wait_dispatched(settings, delivered_before + emails)
        time.sleep(0.5)  # let the last task's bookkeeping finish
        after = tree_cpu(tree)
    engine.dispose()
    return (after - before) / emails


def derive_share(samples: int = 200) -> tuple[float, float]:
    """ms per email of parse_inbound and of derive.email_columns, in this process."""
    from worker import derive, parsing

    events = [json.loads(payloads.email_events("8KB", seed=i))[0] for i in range(samples)]
    started = time.process_time()
    parsed = [parsing.parse_inbound(event) for event in events]
    parse_ms = (time.process_time() - started) * 1000 / samples
    started = time.process_time()
    for email in parsed:
        derive.email_columns(email)
        for attachment in email.attachments:
            derive.attachment_columns(attachment)
    derive_ms = (time.process_time() - started) * 1000 / samples
    return parse_ms, derive_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="off/celery/http, alternating")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    os.environ[SECRET_ENV] = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    tmp = Path(tempfile.mkdtemp(prefix="kave-bench-handoff-"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer204)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    results: dict[str, list[float]] = {"off": [], "celery": [], "http": []}
    try:
        with services(tmp, need_s3=False) as found:
            # Rounds alternate the modes, so that a machine slowing down or speeding up
            # during the run (load from elsewhere) weighs on all three alike.
            for round_number in range(args.rounds):
                for number, mode in enumerate(results):
                    settings = found.settings(
                        queue_name=f"kave-bench-{mode}-{round_number}",
                        handoff_routes_file=routes_file(tmp, mode, url),
                        worker_metrics_port=0,
                    )
                    seed = 1_000_000 * (number + 1) + 10_000 * round_number
                    results[mode].append(measure(settings, tmp, args.emails, seed, mode))
                    print(
                        f"  round {round_number + 1} {mode:<6} "
                        f"{results[mode][-1] * 1000:6.2f} ms CPU per email",
                        flush=True,
                    )
    finally:
        server.shutdown()
        for log in sorted(tmp.glob("worker-*.log")):
            print(f"({log.name}: {log.stat().st_size} bytes)")
        if os.environ.get("KEEP") is None:
            shutil.rmtree(tmp, ignore_errors=True)
    parse_ms, derive_ms = derive_share()
    off = statistics.median(results["off"])
    for mode in ("celery", "http"):
        on = statistics.median(results[mode])
        rounds = ", ".join(
            f"{(m - o) / o:+.1%}" for m, o in zip(results[mode], results["off"], strict=True)
        )
        print(
            f"hand-off {mode}: {(on - off) / off:+.1%} worker CPU per email "
            f"(medians {on * 1000:.2f} vs {off * 1000:.2f} ms; rounds {rounds})"
        )
    print(f"parse_inbound {parse_ms:.2f} ms/email, derived fields {derive_ms:.2f} ms/email")
    return 0


if __name__ == "__main__":
    sys.exit(main())
