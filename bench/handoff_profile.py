"""The hand-off's CPU per email in-process, without Celery's own per-task costs.

``python -m bench.handoff_profile [--emails N] [--rounds R]``: the steadier companion of
``bench.handoff_bench``. Runs ``worker.ingest.batch.process_delivery`` and then, as the ingest
task does, ``worker.handoff.tasks.hand_off_new`` directly against the services
``make bench`` starts (private Redis, scratch database, local object store), for N
distinct 8 KB emails per mode and round, the modes (off, celery, http) alternating:

- CPU is ``time.process_time()`` of this process (the HTTP handler answering 204 with
  keep-alive runs in a child process, so its CPU is not counted);
- per mode: the median CPU ms of a whole email (ingest and hand-off) and of the hand-off
  alone, and the ratio (mode - off) / off of the medians.

What it leaves out, and ``bench.handoff_bench`` includes: the Celery worker's own cost per
task (receiving, the pool's pipes, acknowledging), the same with hand-off on or off.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import statistics
import sys
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

from bench import disk, payloads, stack
from bench.handoff_bench import SECRET_ENV, _Answer204, routes_file
from bench.profile_worker import _envelope
from bench.run import services
from shared.logging import configure_logging
from shared.settings import get_settings
from worker.ingest.context import IngestContext

MODES = ("off", "celery", "http")
Sample = tuple[float, float]  # CPU seconds: the whole email, its hand-off alone


def _serve(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _Answer204).serve_forever()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _use_routes(path: Path | None) -> None:
    """Point this process's settings at a routes file (None: hand-off off)."""
    if path is None:
        os.environ.pop("KAVE_HANDOFF_ROUTES_FILE", None)
    else:
        os.environ["KAVE_HANDOFF_ROUTES_FILE"] = str(path)
    get_settings.cache_clear()


def _run(ctx: IngestContext, emails: int, seed: int, expect_dispatch: bool) -> list[Sample]:
    """Ingest and hand off ``emails`` fresh 8 KB emails; CPU seconds (whole, hand-off)."""
    from worker.handoff import tasks as handoff_tasks
    from worker.ingest.batch import process_delivery

    bodies = [
        payloads.sign(payloads.email_events("8KB", seed=seed + i)).body for i in range(emails)
    ]
    samples: list[Sample] = []
    for envelope in [_envelope(ctx, body) for body in bodies]:
        started = time.process_time()
        result = process_delivery(ctx, envelope)
        stored = time.process_time()
        handoff_tasks.hand_off_new(result.new_dispatches)
        ended = time.process_time()
        assert result.outcomes == {"stored": 1}, result.outcomes
        assert bool(result.new_dispatches) == expect_dispatch
        samples.append((ended - started, ended - stored))
    return samples


def _report(samples: dict[str, list[Sample]]) -> None:
    off = statistics.median(whole for whole, _ in samples["off"])
    for mode in MODES:
        median = statistics.median(whole for whole, _ in samples[mode])
        line = (
            f"{mode:<6} {median * 1000:6.2f} ms CPU per email: ingest "
            f"{statistics.median(w - h for w, h in samples[mode]) * 1000:5.2f} ms, hand-off "
            f"{statistics.median(h for _, h in samples[mode]) * 1000:5.2f} ms"
        )
        if mode != "off":
            line += f": {(median - off) / off:+.1%} against off"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ[SECRET_ENV] = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    port = _free_port()
    server = multiprocessing.get_context("fork").Process(target=_serve, args=(port,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}/hook"
    samples: dict[str, list[Sample]] = {mode: [] for mode in MODES}
    try:
        with disk.scratch("kave-handoff-profile-") as tmp:
            routes = {mode: routes_file(tmp, mode, url) for mode in MODES}
            with services(tmp, need_s3=False) as found:
                settings = found.settings(log_level="WARNING")
                # The worker reads its settings from the environment, as in production.
                os.environ.update(stack.child_env(settings))
                configure_logging(settings, process="worker")
                # Imported once the settings exist: the Celery app reads them.
                import worker.main  # noqa: F401 - the Celery app handler tasks are sent with
                from worker.resources import ingest_context, release

                ctx = ingest_context(settings)
                for round_number in range(-1, args.rounds):  # round -1: warm-up
                    for number, mode in enumerate(MODES):
                        _use_routes(routes[mode])
                        seed = 1000 * args.emails * (round_number + 1) + number * args.emails
                        taken = _run(ctx, args.emails, seed, expect_dispatch=mode != "off")
                        if round_number >= 0:
                            samples[mode].extend(taken)
                release()
    finally:
        server.terminate()
    _report(samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
