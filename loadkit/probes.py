"""What a run against a receiver watches meanwhile: HEAD latency and the process's RSS.

Each probe runs in a thread of its own (``threading.Thread(target=probe.run)``) until
``stop()``. Used by the receiver's hostile-input tests and the bench's ``webhooks`` and
``flood`` stages.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
import psutil

from shared.webhook import WEBHOOK_PATH


@dataclass
class HeadProbe:
    """HEAD every ``interval`` seconds; each answer's latency in seconds."""

    base: str
    interval: float = 0.1
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            next_at = time.perf_counter()
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.head(WEBHOOK_PATH).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.latencies.append(time.perf_counter() - started)
                else:
                    self.failures += 1
                next_at += self.interval
                self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def stop(self) -> None:
        self._stop.set()


@dataclass
class RssSampler:
    pid: int
    interval: float = 0.005
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    since_mark: int = 0

    def run(self) -> None:
        process = psutil.Process(self.pid)
        while not self._stop.is_set():
            rss = process.memory_info().rss
            self.peak = max(self.peak, rss)
            self.since_mark = max(self.since_mark, rss)
            self._stop.wait(self.interval)

    def mark(self) -> int:
        """The peak since the last mark."""
        time.sleep(2 * self.interval)
        peak, self.since_mark = self.since_mark, 0
        return peak

    def stop(self) -> None:
        self._stop.set()
