"""What the hand-off costs the workers: CPU per email with dispatch off and on.

``python -m bench.handoff_bench [--batches B] [--batch N]`` (not part of ``make bench``'s
default stages; BENCHMARKS.md records its figure). Three worker processes
(``--concurrency 1`` each), one per mode, run side by side for the whole run; they take
turns: each gets N distinct 8 KB emails enqueued exactly as the receiver enqueues them,
then the next, B times (the order rotating), so the machine's drift weighs on all alike:

- ``off``: no routes file (the derived fields are still computed: they are part of parsing);
- ``celery``: one catch-all route to a Celery handler task (published to a queue nobody
  consumes, so only the publishing is measured);
- ``http``: one catch-all route to an HTTP handler (a threaded server in this process
  answering 204): the signed POST, its claim and its record.

CPU is each worker's process tree (main process and pool child, user + system) from
before a turn's first enqueue until every delivery is processed and, with hand-off on,
every dispatch delivered. The ratio is (on - off) / off of CPU per email over all turns
(and the median of the turns' ratios). It also times the derived fields alone, in this
process, against parsing the same event.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import structlog
from sqlalchemy import Engine, func, select

from bench import disk, payloads, stack, worker_bench
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


def routes_file(tmp: Path, mode: str, url: str) -> Path | None:
    if mode == "off":
        return None
    handler: dict[str, Any] = (
        {"celery": {"task": "kave.handlers.bench", "queue": "kave-bench-platform"}}
        if mode == "celery"
        else {"http": {"url": url, "secret_env": SECRET_ENV, "timeout_seconds": 5}}
    )
    path = tmp / f"routes-{mode}.json"
    path.write_text(json.dumps({"routes": [{"name": mode, "handler": handler}]}))
    return path


def delivered_count(engine: Engine, route: str) -> int:
    with engine.connect() as conn:
        count = conn.scalar(
            select(func.count())
            .select_from(Dispatch)
            .where(Dispatch.status == DispatchStatus.DELIVERED, Dispatch.route == route)
        )
    return count or 0


class Worker:
    """One mode's worker, alive for the whole run: its settings, process and counters."""

    def __init__(self, mode: str, settings: Settings, process: subprocess.Popen[bytes]) -> None:
        self.mode = mode
        self.settings = settings
        self.tree = psutil.Process(process.pid)
        self.engine = worker_bench.engine_for(settings)
        self.cpu = 0.0
        self.emails = 0

    def batch(self, bodies: list[bytes]) -> float:
        """Process a batch (and hand it off); CPU seconds per email of the worker's tree."""
        expected = delivered_count(self.engine, self.mode) + len(bodies)
        before = stack.tree_cpu(self.tree)
        worker_bench.measure_kave(self.settings, self.engine, bodies)
        if self.mode != "off":
            stack.wait_until(
                lambda: delivered_count(self.engine, self.mode) >= expected,
                300,
                "dispatches delivered",
                0.02,
            )
        time.sleep(0.2)  # let the last task's bookkeeping finish
        used = stack.tree_cpu(self.tree) - before
        self.cpu += used
        self.emails += len(bodies)
        return used / len(bodies)


def derive_share(samples: int = 200) -> tuple[float, float]:
    """ms per email of parse_inbound and of derive.email_columns, in this process."""
    from worker.ingest import derive, parsing

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
    parser.add_argument("--batches", type=int, default=20, help="each mode's turns")
    parser.add_argument("--batch", type=int, default=50, help="emails per turn")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    os.environ[SECRET_ENV] = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with disk.scratch("kave-bench-handoff-", keep=os.environ.get("KEEP") is not None) as tmp:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer204)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        modes = ("off", "celery", "http")
        ratios: dict[str, list[float]] = {"celery": [], "http": []}
        workers: dict[str, Worker] = {}
        try:
            with services(tmp, need_s3=False) as found, ExitStack() as running:
                for mode in modes:
                    settings = found.settings(
                        queue_name=f"kave-bench-{mode}",
                        handoff_routes_file=routes_file(tmp, mode, url),
                        worker_metrics_port=0,
                    )
                    log = tmp / f"worker-{mode}.log"
                    process = running.enter_context(
                        stack.celery_worker(
                            "worker.main", settings.queue_name, stack.child_env(settings), log, 1
                        )
                    )
                    workers[mode] = Worker(mode, settings, process)
                    # Warm-up: database pool, object store, route table, HTTP client.
                    workers[mode].batch(worker_bench.email_bodies("8KB", 4, 10_000 * len(workers)))
                    workers[mode].cpu = workers[mode].emails = 0
                # Short batches, the modes taking turns (the order rotating): the machine's
                # drift, which moves a mode's figure by a fifth within minutes, weighs on all
                # three alike.
                for number in range(args.batches):
                    order = modes[number % 3 :] + modes[: number % 3]
                    per_email: dict[str, float] = {}
                    for mode in order:
                        seed = 1_000_000 * (modes.index(mode) + 1) + number * args.batch
                        bodies = worker_bench.email_bodies("8KB", args.batch, seed)
                        per_email[mode] = workers[mode].batch(bodies)
                    for mode, listed in ratios.items():
                        listed.append(per_email[mode] / per_email["off"] - 1)
                    print(
                        f"  batch {number + 1}: "
                        + ", ".join(f"{m} {per_email[m] * 1000:.2f}" for m in modes)
                        + " ms CPU per email",
                        flush=True,
                    )
        finally:
            server.shutdown()
            for worker in workers.values():
                worker.engine.dispose()
            for log in sorted(tmp.glob("worker-*.log")):
                print(f"({log.name}: {log.stat().st_size} bytes)")
    parse_ms, derive_ms = derive_share()
    off = workers["off"].cpu / workers["off"].emails
    for mode, listed in ratios.items():
        on = workers[mode].cpu / workers[mode].emails
        print(
            f"hand-off {mode}: {(on - off) / off:+.1%} worker CPU per email over "
            f"{workers[mode].emails} emails ({on * 1000:.2f} vs {off * 1000:.2f} ms); "
            f"median batch {statistics.median(listed):+.1%}"
        )
    print(f"parse_inbound {parse_ms:.2f} ms/email, derived fields {derive_ms:.2f} ms/email")
    return 0


if __name__ == "__main__":
    sys.exit(main())
