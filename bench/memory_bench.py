"""Peak RSS of a receiver process and of a worker process for one 25 MB email (~55 MB POST).

Each process is warmed up with a small email first; its idle RSS is read then, its peak
(VmHWM) is reset (``echo 5 > /proc/PID/clear_refs``) and read again after the big one.
The receiver runs as one uvicorn process (``--workers 1``) so that the process measured
is the one that handled the request; the worker runs ``--concurrency 1`` and the process
measured is its pool child, which runs the task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.stack import celery_worker, child_env, uvicorn
from bench.worker_bench import engine_for, enqueue_all, wait_processed
from loadkit import payloads
from loadkit.rss import reset_peak, status_bytes
from shared.settings import Settings
from shared.webhook import WEBHOOK_PATH


def _post(base: str, signed: payloads.SignedBody) -> None:
    response = httpx.post(
        base + WEBHOOK_PATH, content=signed.body, headers=signed.headers, timeout=300
    )
    if response.status_code != 200:
        raise RuntimeError(f"receiver answered {response.status_code}: {response.text[:300]}")


def run(settings: Settings, tmp: Path, progress: Any = print) -> dict[str, Any]:
    raw_event = payloads.inbound_event(payloads.BIG_EMAIL_ATTACHMENT, seed=77)
    raw_bytes = len(raw_event["msg"]["raw_msg"].encode("utf-8"))
    big = payloads.sign(payloads.events_json([raw_event]))
    del raw_event
    small = payloads.sign(payloads.email_events("8KB", seed=78))
    processes: list[dict[str, Any]] = []
    env = child_env(settings)

    with uvicorn("receiver.app:create_app", env, tmp / "memory-receiver.log", workers=1) as (
        base,
        process,
    ):
        _post(base, small)
        idle = status_bytes(process.pid, "VmRSS")
        exact = reset_peak(process.pid)
        _post(base, big)
        peak = status_bytes(process.pid, "VmHWM")
        processes.append(
            {
                "name": "receiver (uvicorn, 1 process)",
                "idle_bytes": idle,
                "peak_bytes": peak,
                "note": "" if exact else "peak not reset: includes start-up",
            }
        )
    progress(f"  receiver: idle {idle / 2**20:.0f} MB, peak {peak / 2**20:.0f} MB")

    engine = engine_for(settings)
    log = tmp / "memory-worker.log"
    with celery_worker("worker.main", settings.queue_name, env, log, concurrency=1) as worker:
        _, ids = enqueue_all(settings, [small.body])
        wait_processed(engine, ids, timeout=120)
        children = psutil.Process(worker.pid).children()
        child = children[0].pid
        idle = status_bytes(child, "VmRSS")
        exact = reset_peak(child)
        _, ids = enqueue_all(settings, [big.body])
        _, failed = wait_processed(engine, ids, timeout=300)
        peak = status_bytes(child, "VmHWM")
        processes.append(
            {
                "name": "worker (pool child)",
                "idle_bytes": idle,
                "peak_bytes": peak,
                "note": ("delivery failed! " if failed else "")
                + ("" if exact else "peak not reset: includes start-up"),
            }
        )
    engine.dispose()
    progress(f"  worker child: idle {idle / 2**20:.0f} MB, peak {peak / 2**20:.0f} MB")
    return {"raw_bytes": raw_bytes, "body_bytes": len(big.body), "processes": processes}
