"""Running blocking checks (a database query) from async routes, safely.

``asyncio.to_thread`` would hand each check to the default executor, which the webhook
path also uses to publish tasks. A database that stops answering (a blackholed host
holds a TCP connect for minutes) would then pile up one stuck thread per probe or scrape
until enqueueing starves and webhooks get 503s. A :class:`BlockingProbe` runs its check
on a daemon thread of its own, one at a time: a caller that comes while a check is in
flight waits for that check's result (within its own timeout) instead of starting a
second one, so a hanging dependency holds one thread per probe, never more.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class BlockingProbe:
    def __init__(self, name: str) -> None:
        self.name = name
        self._inflight: asyncio.Future[Any] | None = None

    async def run(self, check: Callable[[], T], timeout: float) -> T:
        """The result of ``check()`` (or of the check of this probe already running),
        or ``TimeoutError`` after ``timeout`` seconds."""
        future = self._inflight
        if future is None or future.done():
            future = self._inflight = self._start(check)
        # shield: a caller that times out must not cancel the check others wait for.
        return cast(T, await asyncio.wait_for(asyncio.shield(future), timeout))

    def _start(self, check: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        # Nobody may be waiting any more when a hung check finally fails: mark its
        # exception as seen so asyncio does not log "exception was never retrieved".
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

        def deliver(setter: Callable[[Any], None], value: Any) -> None:
            if not future.done():
                setter(value)

        def target() -> None:
            try:
                outcome: tuple[Callable[[Any], None], Any] = (future.set_result, check())
            except BaseException as exc:  # handed to the awaiting coroutines
                outcome = (future.set_exception, exc)
            # RuntimeError: the loop is closed, nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver, *outcome)

        threading.Thread(target=target, name=f"probe-{self.name}", daemon=True).start()
        return future


def probe_for(state: Any, name: str) -> BlockingProbe:
    """The app's probe of that name (``app.state``), created on first use."""
    attribute = f"probe_{name}"
    probe: BlockingProbe | None = getattr(state, attribute, None)
    if probe is None:
        probe = BlockingProbe(name)
        setattr(state, attribute, probe)
    return probe
