"""Kave's benchmark suite: ``make bench`` (or ``python -m bench.run``) prints the table.

Stages, run in this order (``--only`` picks some):

- the default run, the table of BENCHMARKS.md: ``receiver`` (wrk against the receiver
  and a bare FastAPI ceiling), ``worker`` (end-to-end emails/s against a no-op Celery
  task), ``memory`` (peak RSS for a 25 MB email), ``growth`` (per-event cost of a
  1,000-event batch), ``tta`` (time to agent: Mandrill's POST to the platform's HTTP
  handler, at stepped rates, against the stack of ``kave run`` and a ceiling stack;
  ``bench/tta/``);
- hostile input, the figures of RELIABILITY.md (``--only hostile`` runs the first four;
  none is in the default run): ``webhooks`` (hostile webhook bodies), ``flood``
  (connections trickling a huge declared body), ``mail`` (hostile emails refused by the
  parser), ``complexity`` (CPU seconds per MB of adversarial email families), and
  ``fuzz``, a timed search for new slow email bodies (``bench/hostile/``).

Every stage starts the services it needs (see ``bench/stack.py``) and leaves nothing
behind but ``--out`` (a JSON record of every figure) and the logs in the scratch
directory.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import structlog

from bench import report, stack
from loadkit import disk, payloads
from shared.settings import Settings

STAGES = ("receiver", "worker", "memory", "growth", "tta")  # the default run
HOSTILE_STAGES = ("webhooks", "flood", "mail", "complexity")  # --only hostile
ALL_STAGES = (*STAGES, *HOSTILE_STAGES, "fuzz")
# POST sizes: the receiver's issue (6) named 8 KB, 100 KB and 3 MB; the worker's CPU per
# email (issue 35) 8 KB, 100 KB and 1 MB.
RECEIVER_SIZES = ("8KB", "100KB", "3MB")
WORKER_SIZES = ("8KB", "100KB", "1MB")
# The stages that need the run's Redis and database (tta starts embedded ones, as `kave
# run` does; the others time the parser alone).
SERVICE_STAGES = frozenset({"receiver", "worker", "memory", "growth", "webhooks", "flood"})
QUEUE = "kave-bench"

STAGES_HELP = """\
stages (on this repository's 2-core machine):
  the default run, BENCHMARKS.md's table (~17 minutes; less with --quick):
    receiver    wrk against the receiver and a bare FastAPI ceiling, 8 KB / 100 KB / 3 MB
    worker      CPU per email and emails/s end to end against a no-op Celery task,
                8 KB / 100 KB / 1 MB, local store and S3
    memory      peak RSS of a receiver and a worker process for one 25 MB email
    growth      per-event cost of a 1,000-event batch against one event per batch
    tta         time to agent (POST to the agent's HTTP handler) at stepped rates, the
                stack of `kave run` against a ceiling stack; p50, p99, sustained rate,
                and a plot next to --out (~7 minutes; --tta-rates, --tta-step-seconds)
  hostile input, RELIABILITY.md's figures (not in the default run; --only hostile runs
  all four, ~7 minutes):
    webhooks    hostile webhook bodies against one receiver, HEAD and RSS watched
    flood       connections that declare 100 MiB and trickle it, three rounds
    mail        hostile emails (parts bombs, deep nesting, huge headers) refused by the parser
    complexity  CPU seconds per MB of each adversarial email family
  and by name only:
    fuzz        a 3-minute search (30 s with --quick) for new slow email bodies
"""


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
        sizes=list(WORKER_SIZES),
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
        sizes=list(RECEIVER_SIZES),
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


def _memory_stage(
    found: Services, tmp: Path, quick: bool, progress: Callable[[str], None]
) -> dict[str, Any]:
    from bench import memory_bench

    return memory_bench.run(found.settings(), tmp, progress=progress)


def _growth_stage(
    found: Services, tmp: Path, quick: bool, progress: Callable[[str], None]
) -> dict[str, Any]:
    from bench import growth_bench

    return growth_bench.run(found.settings(), tmp, quick=quick, progress=progress)


def _webhooks_stage(
    found: Services, tmp: Path, quick: bool, progress: Callable[[str], None]
) -> dict[str, Any]:
    from bench.hostile import ReceiverStage, webhooks

    return webhooks.run(ReceiverStage(found.settings, tmp, quick, progress))


def _flood_stage(
    found: Services, tmp: Path, quick: bool, progress: Callable[[str], None]
) -> dict[str, Any]:
    from bench.hostile import ReceiverStage, flood

    return flood.run(ReceiverStage(found.settings, tmp, quick, progress))


def _parser_stage(name: str) -> Callable[..., dict[str, Any]]:
    """A stage that times the parser in this process: no services, no scratch files."""

    def stage(
        _found: Services | None, _tmp: Path, quick: bool, progress: Callable[[str], None]
    ) -> dict[str, Any]:
        module = importlib.import_module(f"bench.hostile.{name}")
        figures: dict[str, Any] = module.run(quick=quick, progress=progress)
        return figures

    return stage


def _tta_stage(
    _found: Services | None,
    tmp: Path,
    quick: bool,
    progress: Callable[[str], None],
    args: argparse.Namespace,
) -> dict[str, Any]:
    from bench.tta import stage

    rates = [float(r) for r in args.tta_rates.split(",")] if args.tta_rates else None
    return stage.run(
        tmp,
        quick=quick,
        rates=rates or (stage.QUICK_RATES if quick else stage.RATES),
        step_seconds=args.tta_step_seconds,
        plot_path=args.out.with_name(args.out.stem + "-time-to-agent.png"),
        progress=progress,
    )


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "receiver": _receiver_stage,
    "worker": _worker_stage,
    "memory": _memory_stage,
    "growth": _growth_stage,
    "tta": _tta_stage,
    "webhooks": _webhooks_stage,
    "flood": _flood_stage,
    "mail": _parser_stage("mail"),
    "complexity": _parser_stage("complexity"),
    "fuzz": _parser_stage("fuzz"),
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
        with ExitStack() as running:
            found = None
            if SERVICE_STAGES.intersection(stages):
                found = running.enter_context(services(tmp, need_s3="worker" in stages))
                results["machine"]["redis"] = found.extra["redis_version"]
            for stage in stages:
                # The tta stage has options of its own (its rates, its plot's path).
                options = {"args": args} if stage == "tta" else {}
                results[stage] = RUNNERS[stage](found, tmp, args.quick, progress, **options)
    finally:
        results["elapsed_seconds"] = round(time.monotonic() - started, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))
    return results


def selected_stages(only: str) -> tuple[list[str], set[str]]:
    """The stages ``--only`` names (``hostile`` standing for its four), in the order they
    run, and the names it does not know."""
    names = {name.strip() for name in only.split(",") if name.strip()}
    if "hostile" in names:
        names = (names - {"hostile"}) | set(HOSTILE_STAGES)
    return [stage for stage in ALL_STAGES if stage in names], names - set(ALL_STAGES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=STAGES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        default=",".join(STAGES),
        help=f"stages, comma-separated (default: {','.join(STAGES)}; see below)",
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test)")
    parser.add_argument("--out", type=Path, default=Path("var/bench/results.json"))
    parser.add_argument(
        "--tta-rates",
        default="",
        help="the tta stage's offered rates, emails/s, comma-separated "
        "(default 5,10,20,40,60,80,120,160,240; with --quick 5,10,20,40)",
    )
    parser.add_argument(
        "--tta-step-seconds",
        type=float,
        default=None,
        help="seconds per step of the tta stage (default 25; with --quick 8)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--scratch-in",
        type=Path,
        default=disk.SCRATCH_PARENT,
        help="where the scratch directory (object store, Redis files, logs) is made; "
        "default var/bench, next to var/objects where `make run` keeps its objects",
    )
    args = parser.parse_args(argv)
    stages, unknown = selected_stages(args.only)
    if unknown or not stages:
        parser.error(
            f"unknown stage(s) {', '.join(sorted(unknown))}; choose from "
            f"{', '.join(ALL_STAGES)} or hostile"
        )
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
