"""``kave run``'s process manager: keep every child up, restart a crashed one with backoff.

A crashed worker must not take the receiver down with it (Mandrill would be refused
meanwhile), so each child is restarted on its own: after 1 s, then 2, 4 ... up to 30 s
while it keeps crashing, and from 1 s again once it has stayed up for a minute. SIGINT
(Ctrl-C) and SIGTERM stop every child once, in order, and end the supervision.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType

from kave.devstack.processes import kill_group, spawn


def _say(message: str) -> None:
    print(f"kave: {message}", flush=True)


@dataclass(frozen=True)
class Backoff:
    initial_seconds: float = 1.0
    max_seconds: float = 30.0
    # A child that ran this long before it exited starts again from ``initial_seconds``.
    stable_seconds: float = 60.0


@dataclass
class _Child:
    name: str
    command: list[str]
    env: Mapping[str, str] | None = None  # None: the supervisor's
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    next_delay: float = 0.0
    restart_at: float | None = None


@dataclass
class Supervisor:
    env: Mapping[str, str]
    backoff: Backoff = field(default_factory=Backoff)
    say: Callable[[str], None] = _say
    _children: list[_Child] = field(default_factory=list)
    _stopping: bool = False

    def add(self, name: str, command: list[str], env: Mapping[str, str] | None = None) -> None:
        """A child to run with ``command``, in ``env`` (default: the supervisor's)."""
        self._children.append(_Child(name, command, env, next_delay=self.backoff.initial_seconds))

    def start(self) -> None:
        """Start every child; from now on SIGINT and SIGTERM end :meth:`run` (and a second
        Ctrl-C while the stack stops is ignored rather than cutting the stop short)."""

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            self.request_stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        for child in self._children:
            self._start(child)

    def run(self) -> None:
        """Supervise until SIGINT or SIGTERM."""
        while not self._stopping:
            now = time.monotonic()
            for child in self._children:
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        self._start(child)
                        self.say(f"{child.name} restarted")
                elif child.process is not None and child.process.poll() is not None:
                    self._schedule_restart(child, now)
            time.sleep(0.2)

    def request_stop(self) -> None:
        """Make :meth:`run` return; the children are left to :meth:`stop`."""
        self._stopping = True

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM every running child, then SIGKILL what has not ended in ``timeout``."""
        self._stopping = True
        running = [c for c in self._children if c.process is not None and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            child.process.terminate()
        deadline = time.monotonic() + timeout
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop in time; killing it")
                child.process.kill()
                child.process.wait()

    def _start(self, child: _Child) -> None:
        # A session of its own: Ctrl-C reaches `kave run` only, which then stops each
        # child once (a second SIGINT would make Celery cold-stop), and a crashed child's
        # leftover processes can be found by its process group.
        env = child.env if child.env is not None else self.env
        child.process = spawn(child.command, env=env, new_session=True)
        child.started_at = time.monotonic()
        child.restart_at = None

    def _schedule_restart(self, child: _Child, now: float) -> None:
        assert child.process is not None
        code = child.process.returncode
        # Whatever it left behind (a killed Celery worker's pool processes, its embedded
        # beat) would otherwise keep running next to its successor.
        kill_group(child.process.pid)
        if now - child.started_at >= self.backoff.stable_seconds:
            child.next_delay = self.backoff.initial_seconds
        delay = child.next_delay
        child.next_delay = min(delay * 2, self.backoff.max_seconds)
        child.restart_at = now + delay
        self.say(f"{child.name} exited with code {code}; restarting in {delay:g} s")
