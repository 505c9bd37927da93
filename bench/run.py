"""Kave's benchmark suite: ``make bench`` (or ``python -m bench.run``) prints the table.

Stages, run in this order (``--only`` picks some): ``receiver`` (wrk against the receiver
and a bare FastAPI ceiling), ``worker`` (end-to-end emails/s against a no-op Celery task),
``memory`` (peak RSS for a 25 MB email), ``growth`` (per-event cost of a 1,000-event
batch). Every stage starts the services it needs (see ``bench/stack.py``) and leaves
nothing behind but ``--out`` (a JSON record of every figure) and the logs in the scratch
directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import structlog

from bench import report, stack
from loadkit import disk, payloads
from shared.settings import Settings

STAGES = ("receiver", "worker", "memory", "growth")
QUEUE = "kave-bench"


@dataclass
class Services:
    tmp: Path
    redis_url: str
    database_url: str
    # The local store of the worker, memory and growth stages (disk.store_directory).
    objects: Path
    s3_endpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self, **changes: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "test",
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "object_store": "local",
            "local_store_dir": self.objects,
            "mandrill_webhook_urls": [payloads.BENCH_WEBHOOK_URL],
            "mandrill_webhook_keys": [payloads.BENCH_WEBHOOK_KEY],
            "queue_name": QUEUE,
            "log_format": "json",
            "log_level": "INFO",
        }
        if self.s3_endpoint:
            values.update(
                s3_endpoint_url=self.s3_endpoint,
                s3_bucket="kave-bench",
                s3_access_key_id="bench",
                s3_secret_access_key="bench",  # noqa: S106 - moto accepts anything
            )
        values.update(changes)
        return Settings(_env_file=None, **values)


@contextmanager
def services(tmp: Path, need_s3: bool) -> Iterator[Services]:
    with (
        stack.redis_server(tmp) as (redis_url, redis_version),
        stack.postgres_database(tmp) as database_url,
    ):
        found = Services(tmp, redis_url, database_url, disk.store_directory(tmp, "objects-"))
        found.extra["redis_version"] = redis_version
        if not need_s3:
            yield found
            return
        with stack.s3_server(tmp / "moto.log") as endpoint:
            found.s3_endpoint = endpoint
            from shared.objectstore import make_s3_client

            make_s3_client(found.settings(object_store="s3")).create_bucket(Bucket="kave-bench")
            yield found


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk_version = ""
    if shutil.which("wrk"):
        out = subprocess.run(
            ["wrk", "--version"],  # noqa: S607 - found on PATH just above
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        wrk_version = out.splitlines()[0] if out else ""
    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in psutil.getloadavg()],
        "wrk": wrk_version,
    }


def _worker_stage(
    found: Services, tmp: Path, quick: bool, progress: Callable[[str], None]
) -> dict[str, Any]:
    from bench import worker_bench

    rows = worker_bench.run(
        found.settings(),
        found.settings(object_store="s3") if found.s3_endpoint else None,
        tmp,
        sizes=list(payloads.SIZES),
        processes=[1, 2],
        quick=quick,
        progress=progress,
    )
    return {"rows": [row.as_dict() for row in rows]}


def _receiver_stage(
    found: Services, tmp: Path, quick: bool, progress: Callable[[str], None]
) -> dict[str, Any]:
    from bench import receiver_bench

    # Not the worker stage's store: the claim-checked bodies put here are deleted after
    # each round (and overwritten, the same body every request), and the scratch
    # directory spreads its subdirectories over block groups (bench/disk.py), so the
    # worker's creations do not walk past these deleted inodes.
    settings = found.settings(local_store_dir=disk.store_directory(tmp, "receiver-objects-"))
    rows = receiver_bench.run(
        stack.child_env(settings),
        tmp,
        sizes=list(payloads.SIZES),
        seconds=3 if quick else 5,
        rounds=2 if quick else 3,
        warmup=1 if quick else 2,
        redis_url=found.redis_url,
        store_dir=settings.local_store_dir,
        progress=progress,
    )
    return {
        "server_command": " ".join(stack.uvicorn_command("<app>", 0, 2)[3:]).replace(
            "--port 0", "--port <port>"
        ),
        "connections": receiver_bench.CONNECTIONS,
        "redis_stall_threshold_ms": receiver_bench.REDIS_STALL_THRESHOLD_MS,
        "rows": [row.as_dict() for row in rows],
    }


def _run_stages(tmp: Path, stages: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the run; written to ``--out`` even when a stage fails."""
    started = time.monotonic()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "scratch_file_create_us": disk.file_create_us(tmp)},
        "quick": args.quick,
    }
    print(
        f"kave bench: stages {', '.join(stages)}; scratch {tmp} "
        f"(creating a file there: {results['machine']['scratch_file_create_us']:g} us)",
        flush=True,
    )

    def progress(message: str) -> None:
        print(message, flush=True)

    try:
        with services(tmp, need_s3="worker" in stages) as found:
            results["machine"]["redis"] = found.extra["redis_version"]
            if "receiver" in stages:
                results["receiver"] = _receiver_stage(found, tmp, args.quick, progress)
            if "worker" in stages:
                results["worker"] = _worker_stage(found, tmp, args.quick, progress)
            if "memory" in stages:
                from bench import memory_bench

                results["memory"] = memory_bench.run(found.settings(), tmp, progress=progress)
            if "growth" in stages:
                from bench import growth_bench

                results["growth"] = growth_bench.run(
                    found.settings(), tmp, quick=args.quick, progress=progress
                )
    finally:
        results["elapsed_seconds"] = round(time.monotonic() - started, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(STAGES), help="stages, comma-separated")
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test)")
    parser.add_argument("--out", type=Path, default=Path("var/bench/results.json"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--scratch-in",
        type=Path,
        default=disk.SCRATCH_PARENT,
        help="where the scratch directory (object store, Redis files, logs) is made; "
        "default var/bench, next to var/objects where `make run` keeps its objects",
    )
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(sorted(unknown))}; choose from {STAGES}")
    if "receiver" in stages and not shutil.which("wrk"):
        print("bench: wrk is not installed; `make bench` installs it (apt-get install wrk)")
        return 2

    # This process enqueues through receiver.enqueue, which logs every delivery: keep the
    # console for the table (the servers and workers log to files in the scratch dir).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    # Not the system's temporary directory: what a file creation costs differs by
    # directory on one disk, and the local store's puts pay it (bench/disk.py).
    with disk.scratch("kave-bench-", args.scratch_in, keep=args.keep) as tmp:
        results = _run_stages(tmp, stages, args)
    print()
    print(report.render(results))
    print(f"\n(figures in {args.out}; {results['elapsed_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
