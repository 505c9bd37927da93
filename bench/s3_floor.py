"""The floor of the worker stage's S3 rows: an email's objects put, and nothing else.

Whatever else a worker does, a ~100 KB email on S3 costs it three puts: the webhook
body's archive, the raw message and the attachment (the data model of DESIGN.md). This
puts the objects of fresh bench emails to the bench's S3 server (moto) with Kave's
client in three orders (all at once on threads, one after another, and the archive
first, then the email's two at once), then times a no-op Celery task with the worker
stage's command line. The last line is the best ratio a worker could reach in the worker
stage if it stored those objects in the fastest of those orders and did nothing else,
not even parse the email or write a row.

    .venv/bin/python -m bench.s3_floor [--count 200]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.noop_task import NOOP_QUEUE
from bench.run import services
from bench.stack import celery_worker, child_env
from bench.worker_bench import email_bodies, measure_noop
from shared.contract import archive_object_key
from shared.objectstore import ObjectStore, make_object_store
from worker.ingest import parsing
from worker.ingest.batch import read_batch
from worker.ingest.storage.objects import email_objects

SIZE = "100KB"
Objects = list[tuple[str, bytes]]


def objects_of(body: bytes) -> Objects:
    """What the worker puts for this webhook body: its archive and its email's objects."""
    email = parsing.parse_inbound(read_batch(body)[0])
    archive = (archive_object_key(hashlib.sha256(body).hexdigest()), body)
    return [archive, *((key, data) for key, (data, _) in email_objects(email).items())]


def put_in_turn(store: ObjectStore, objects: Objects, threads: ThreadPoolExecutor) -> None:
    for key, data in objects:
        store.put(key, data)


def put_at_once(store: ObjectStore, objects: Objects, threads: ThreadPoolExecutor) -> None:
    for future in [threads.submit(store.put, key, data) for key, data in objects]:
        future.result()


def put_archive_first(store: ObjectStore, objects: Objects, threads: ThreadPoolExecutor) -> None:
    put_in_turn(store, objects[:1], threads)
    put_at_once(store, objects[1:], threads)


ORDERS = {
    "all at once": put_at_once,
    "one after another": put_in_turn,
    "archive, then the email's at once": put_archive_first,
}


def timed(put: Callable[..., None], *args: object) -> float:
    started = time.perf_counter()
    put(*args)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="kave-s3-floor-") as scratch,
        services(Path(scratch), need_s3=True) as found,
        ThreadPoolExecutor(max_workers=3, thread_name_prefix="floor-put") as threads,
    ):
        store = make_object_store(found.settings(object_store="s3"))
        # Fresh emails for every put: moto's cost for a key it already holds is no figure.
        emails = iter(
            objects_of(body)
            for body in email_bodies(SIZE, args.count // 4 + len(ORDERS) * args.count, seed=7)
        )
        for _ in range(args.count // 4):  # warm-up: the client's connections, moto
            put_at_once(store, next(emails), threads)
        walls: dict[str, list[float]] = {name: [] for name in ORDERS}
        for _ in range(args.count):  # the orders take turns, so that drift hits all alike
            for name, put in ORDERS.items():
                walls[name].append(timed(put, store, next(emails), threads))

        base = found.settings()
        bodies = email_bodies(SIZE, args.count, seed=9)
        with celery_worker(
            "bench.noop_worker", NOOP_QUEUE, child_env(base), Path(scratch) / "noop.log", 1
        ):
            measure_noop(base, [b"x" * 1000] * 4)  # warm-up
            noop_seconds = measure_noop(base, bodies) / len(bodies)

    medians = {name: statistics.median(values) * 1000 for name, values in walls.items()}
    print(f"{SIZE} email, three objects; {args.count} emails each order, wall ms (median):")
    for name, median in medians.items():
        print(f"  {name}: {median:.2f}")
    floor = min(medians.values())
    noop_ms = noop_seconds * 1000
    print(f"  no-op Celery task, 1 process: {noop_ms:.2f} ms a message")
    print(
        "  best worker-stage ratio with the puts alone: "
        f"{noop_ms / (noop_ms + floor):.1%} (target: >= 30%)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
