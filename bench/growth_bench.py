"""Per-event cost of one 1,000-event batch against the same events one per batch.

One worker process (``--concurrency 1``), local object store. Two kinds of events: small
inbound emails (text and HTML, no attachment) and ``open`` tracking events. For each
kind: 1,000 distinct events in one delivery, then distinct events one per delivery, each
timed from enqueue to the last committed delivery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stack import celery_worker, child_env
from bench.worker_bench import engine_for, enqueue_all, wait_processed
from loadkit import payloads
from shared.settings import Settings

BATCH = 1000


def _inbound(seed: int) -> dict[str, Any]:
    return payloads.inbound_event(0, text_words=60, seed=seed)


def _bodies(make: Any, start: int, count: int, per_batch: int) -> list[bytes]:
    bodies = []
    for first in range(start, start + count, per_batch):
        events = [make(seed) for seed in range(first, first + per_batch)]
        bodies.append(payloads.sign(payloads.events_json(events)).body)
    return bodies


def run(settings: Settings, tmp: Path, *, quick: bool, progress: Any = print) -> dict[str, Any]:
    singles = 60 if quick else 200
    engine = engine_for(settings)
    rows: list[dict[str, Any]] = []
    factors: dict[str, float] = {}
    env = child_env(settings)
    with celery_worker("worker.main", settings.queue_name, env, tmp / "growth.log", 1):
        _, ids = enqueue_all(settings, _bodies(_inbound, 50_000_000, 2, 1))
        wait_processed(engine, ids, timeout=120)
        for kind, make, first_seed in (
            ("inbound email", _inbound, 60_000_000),
            ("open event", payloads.tracking_event, 70_000_000),
        ):
            seed = first_seed
            per_event: dict[str, float] = {}
            for shape, count, per_batch in (
                (f"{kind}s, 1 per batch", singles, 1),
                (f"{kind}s, {BATCH} in one batch", BATCH, BATCH),
            ):
                bodies = _bodies(make, seed, count, per_batch)
                seed += count
                started, ids = enqueue_all(settings, bodies)
                finished, failed = wait_processed(engine, ids, timeout=600)
                seconds = finished - started
                per_event[shape] = seconds / count
                rows.append(
                    {
                        "shape": shape,
                        "events": count,
                        "deliveries": len(bodies),
                        "body_bytes": sum(len(b) for b in bodies),
                        "seconds": round(seconds, 3),
                        "ms_per_event": round(1000 * seconds / count, 3),
                        "failed": failed,
                    }
                )
                progress(f"  growth {shape}: {1000 * seconds / count:.2f} ms/event")
            single, batch = per_event.values()
            factors[kind] = batch / single
    engine.dispose()
    return {
        "description": f"one {BATCH}-event batch vs the same kind of events one per batch "
        "(1 worker process, local store)",
        "rows": rows,
        "factors": {kind: round(f, 3) for kind, f in factors.items()},
    }
