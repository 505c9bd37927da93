"""Profile the worker's ingest in-process: CPU per delivery, and the copies of a big
email's body alive at its peak.

Runs ``worker.ingest.batch.process_delivery`` directly (no Celery) against a private Redis,
a scratch PostgreSQL database (as ``make bench`` starts them) and the local object store:

    .venv/bin/python -m bench.profile_worker              # 200 x ~100 KB, cProfile top 25
    .venv/bin/python -m bench.profile_worker --memory     # one ~25 MB email, tracemalloc
    .venv/bin/python -m bench.profile_worker --store s3 --s3-latency-ms 20 --top 0
        # on the S3 server (moto), each request 20 ms late (bench.latency_proxy): what a
        # worker waits for against a remote S3

CPU mode prints the process CPU ms and wall ms per delivery (median of N; PostgreSQL's
and Redis's own CPU are not included, the waits for them and for fsync are in wall) and
the top functions by cumulative time. Memory mode prints the traced peak and, at each
upload and at the row insert, which allocations of 1 MB or more are alive and where
they were made: the copies of the body that coexist.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import statistics
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import disk, latency_proxy, payloads, rss
from bench.run import services
from shared.contract import Envelope, PayloadStore, archive_object_key, payload_redis_key
from shared.logging import configure_logging
from shared.settings import Settings
from worker.ingest import parsing
from worker.ingest.batch import process_delivery
from worker.ingest.context import IngestContext
from worker.ingest.parsing import attachments, inbound
from worker.ingest.storage import emails as stored_emails
from worker.resources import ingest_context, release

MB = 2**20
CLAIM_CHECK_BYTES = Settings.model_fields["claim_check_threshold_bytes"].default


def _envelope(ctx: IngestContext, body: bytes) -> Envelope:
    """Store the body as the receiver does (Redis, or the object store above the
    claim-check threshold) and return its envelope."""
    delivery_id = uuid.uuid4().hex
    sha256 = hashlib.sha256(body).hexdigest()
    if len(body) > CLAIM_CHECK_BYTES:
        store: PayloadStore = "object"
        key = archive_object_key(sha256)
        ctx.object_store.put(key, body)
    else:
        store, key = "redis", payload_redis_key(delivery_id)
        ctx.redis.set(key, body)
    return Envelope(
        delivery_id=delivery_id,
        received_at=datetime.now(UTC).isoformat(),
        body_sha256=sha256,
        body_size=len(body),
        payload_store=store,
        payload_key=key,
        request_id=uuid.uuid4().hex,
    )


@contextmanager
def _context(tmp: Path, store: str = "local", s3_latency_ms: float = 0) -> Iterator[IngestContext]:
    with services(tmp, need_s3=store == "s3") as found, ExitStack() as stack:
        settings = found.settings(log_level="WARNING", object_store=store)
        if store == "s3" and s3_latency_ms:
            assert found.s3_endpoint is not None
            proxy = stack.enter_context(
                latency_proxy.DelayingProxy(found.s3_endpoint, s3_latency_ms / 1000)
            )
            settings = settings.model_copy(update={"s3_endpoint_url": proxy.url})
        # As the worker configures it; WARNING keeps the per-event debug lines out of
        # the figures (the worker runs at INFO, and ingest logs nothing at INFO).
        configure_logging(settings, process="worker")
        ctx = ingest_context(settings)
        try:
            yield ctx
        finally:
            release()


def profile_cpu(ctx: IngestContext, count: int, size: str, top: int) -> None:
    bodies = [
        payloads.sign(payloads.email_events(size, seed=1000 + i)).body
        for i in range(2 * count + 10)
    ]
    for body in bodies[:10]:  # warm-up: connections, imports, caches
        process_delivery(ctx, _envelope(ctx, body))
    timed = [_envelope(ctx, body) for body in bodies[10 : 10 + count]]
    profiled = [_envelope(ctx, body) for body in bodies[10 + count :]]
    del bodies
    cpu: list[float] = []
    wall: list[float] = []
    for envelope in timed:  # without the profiler: the figures
        c0, w0 = time.process_time(), time.perf_counter()
        result = process_delivery(ctx, envelope)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        assert result.outcomes == {"stored": 1}, result.outcomes
    print(f"{count} deliveries of {size} (POST {timed[0].body_size / 1024:.0f} KB), no profiler:")
    print(
        f"  CPU ms/delivery: median {statistics.median(cpu) * 1000:.2f}, "
        f"mean {statistics.fmean(cpu) * 1000:.2f}"
    )
    print(
        f"  wall ms/delivery: median {statistics.median(wall) * 1000:.2f}, "
        f"mean {statistics.fmean(wall) * 1000:.2f}"
    )
    if not top:
        return
    profiler = cProfile.Profile()
    for envelope in profiled:  # other emails of the same size, under cProfile
        profiler.enable()
        process_delivery(ctx, envelope)
        profiler.disable()
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(top)
        print(out.getvalue())


def _live_big_allocations(label: str, minimum: int) -> None:
    snapshot = tracemalloc.take_snapshot()
    current, peak = tracemalloc.get_traced_memory()
    print(f"  at {label}: traced {current / MB:.1f} MB (peak so far {peak / MB:.1f} MB)")
    for stat in snapshot.statistics("traceback"):
        if stat.size < minimum:
            break
        frames = [f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}" for frame in stat.traceback]
        print(f"    {stat.size / MB:6.1f} MB  {' <- '.join(reversed(frames[-4:]))}")


def _big_body(seed: int) -> bytes:
    event = payloads.inbound_event(payloads.BIG_EMAIL_ATTACHMENT, seed=seed)
    return payloads.sign(payloads.events_json([event])).body


def profile_memory(ctx: IngestContext) -> None:
    small = payloads.sign(payloads.email_events("8KB", seed=78)).body
    process_delivery(ctx, _envelope(ctx, small))
    # First without tracemalloc (which costs memory itself): the process's peak RSS, as
    # bench/memory_bench.py reads it for the worker's pool child.
    envelope = _envelope(ctx, _big_body(seed=76))
    post = envelope.body_size
    print(f"one email, POST {post / MB:.1f} MB")
    idle = rss.status_bytes("self", "VmRSS")
    if rss.reset_peak("self"):
        result = process_delivery(ctx, envelope)
        assert result.outcomes == {"stored": 1}, result.outcomes
        peak = rss.status_bytes("self", "VmHWM")
        print(
            f"  RSS: idle {idle / MB:.1f} MB, peak {peak / MB:.1f} MB, peak - idle "
            f"{(peak - idle) / MB:.1f} MB ({(peak - idle) / post:.2f}x the POST)"
        )
    envelope = _envelope(ctx, _big_body(seed=77))

    lock = threading.Lock()  # the uploads run on threads

    def watched(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            with lock:
                _live_big_allocations(f"{label} (start)", MB)
            result = function(*args, **kwargs)
            with lock:
                _live_big_allocations(f"{label} (end)", MB)
            return result

        return run

    # Where copies of the body may coexist: the steps of ingest, in order. (Not
    # read_batch: a wrapper would keep the body it is handed alive.)
    points: list[tuple[Any, str]] = [
        (parsing, "parse_batch"),
        (inbound, "parse_mime"),
        (inbound, "mime_parts"),
        (inbound, "collect_attachments"),
        (attachments, "_decode_base64"),
        (ctx.object_store, "put"),
        (stored_emails, "insert_email"),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name in points]
    for owner, name, original in originals:
        setattr(owner, name, watched(name, original))
    tracemalloc.start(12)
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = process_delivery(ctx, envelope)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        for owner, name, original in originals:
            if owner is ctx.object_store:
                delattr(owner, name)  # the bound method of the class again
            else:
                setattr(owner, name, original)
    assert result.outcomes == {"stored": 1}, result.outcomes
    print(
        f"  traced peak above start: {(peak - before) / MB:.1f} MB "
        f"({(peak - before) / post:.2f}x the POST)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", action="store_true", help="the 25 MB email, tracemalloc")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", default="100KB", choices=sorted(payloads.SIZES))
    parser.add_argument("--top", type=int, default=25, help="0: no cProfile")
    parser.add_argument("--store", default="local", choices=["local", "s3"])
    parser.add_argument(
        "--s3-latency-ms", type=float, default=0, help="with --store s3: each request this late"
    )
    args = parser.parse_args(argv)
    with (
        disk.scratch("kave-profile-") as scratch,
        _context(scratch, args.store, args.s3_latency_ms) as ctx,
    ):
        if args.memory:
            profile_memory(ctx)
        else:
            profile_cpu(ctx, args.count, args.size, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
