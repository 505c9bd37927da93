"""How long an fsync takes on the benchmark's disk while a measurement runs.

Kave's delivery waits on fsyncs (PostgreSQL's commit, the local store's objects), and a
ceiling that stores nothing waits on none. On the 2-core VM of these benchmarks an idle
disk answered most fsyncs of 4 KB in 0.4 ms, and some every 15-30 s in 50-270 ms
(2026-12-08): one such stall in a 25 s step is its p99 at 5 emails/s. The probe writes
and fsyncs 4 KB in a thread every ``interval`` seconds next to the stack's files, so a
step's table row says whether the disk stalled under it. Its own cost is one small
write a fifth of a second.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType

INTERVAL_SECONDS = 0.2
BLOCK = b"\0" * 4096


class FsyncProbe:
    """``with FsyncProbe(directory) as probe: ...``; then ``probe.max_ms`` and
    ``probe.samples``."""

    def __init__(self, directory: Path, interval: float = INTERVAL_SECONDS) -> None:
        self.path = directory / f"fsync-probe-{os.getpid()}-{threading.get_ident()}"
        self.interval = interval
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fsync-probe", daemon=True)

    @property
    def max_ms(self) -> float:
        return max(self.latencies_ms, default=0.0)

    @property
    def samples(self) -> int:
        return len(self.latencies_ms)

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while not self._stop.is_set():
                os.pwrite(fd, BLOCK, 0)
                started = time.perf_counter()
                os.fsync(fd)
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
                self._stop.wait(self.interval)
        finally:
            os.close(fd)
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FsyncProbe:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
