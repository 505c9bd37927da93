"""Object puts under way on the process's upload threads, and the wait for them.

An S3 put is slow for a reason that needs no CPU here: a network round trip. Started on
the upload threads (``worker.resources``; the local store has none, and puts in turn),
it runs while the worker parses and writes its statements, and only what must not
happen before the object is stored waits for it: a commit of rows that name it, the
deletion of the body's Redis copy. That wait is :meth:`PendingPuts.wait`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future


class PendingPuts:
    """Puts in flight (none: all done already, or made inline)."""

    def __init__(self, futures: Sequence[Future[None]] = ()) -> None:
        self._futures = list(futures)

    @property
    def in_flight(self) -> bool:
        return bool(self._futures)

    def wait(self) -> None:
        """Return once every put is stored. The first failure is raised here, and the
        puts not started yet are dropped (see :meth:`cancel`)."""
        try:
            for future in self._futures:
                future.result()
        except BaseException:
            self.cancel()
            raise
        self._futures = []

    def cancel(self) -> None:
        """Drop the puts not started yet: after a failure or a time limit nothing will
        name them. Those under way finish harmlessly (keys are content-addressed: the
        next attempt writes the same bytes)."""
        for future in self._futures:
            future.cancel()
