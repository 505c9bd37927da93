"""The supervisor of `kave run`, on real short-lived child processes: the restart delay
doubles up to its cap while a child keeps crashing, and starts over once it stayed up."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

import pytest

from kave.devstack.supervisor import Backoff, Supervisor


@pytest.fixture(autouse=True)
def _keep_signal_handlers() -> Iterator[None]:
    # The supervisor takes over SIGINT and SIGTERM, as `kave run` needs; not for pytest.
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _supervise(child_seconds: float, backoff: Backoff, messages_wanted: int) -> list[str]:
    messages: list[str] = []
    supervisor = Supervisor(dict(os.environ), backoff=backoff)

    def say(message: str) -> None:
        messages.append(message)
        if len(messages) >= messages_wanted:
            supervisor.request_stop()

    supervisor.say = say
    code = f"import sys, time; time.sleep({child_seconds}); sys.exit(3)"
    supervisor.add("crasher", [sys.executable, "-c", code])
    supervisor.start()
    try:
        supervisor.run()
    finally:
        supervisor.stop(timeout=5)
    return messages


def test_the_delay_doubles_up_to_its_cap_while_a_child_keeps_crashing() -> None:
    backoff = Backoff(initial_seconds=0.1, max_seconds=0.4, stable_seconds=60)
    messages = _supervise(0, backoff, messages_wanted=8)
    exits = [m for m in messages if "exited" in m]
    assert exits == [
        f"crasher exited with code 3; restarting in {delay} s" for delay in (0.1, 0.2, 0.4, 0.4)
    ]
    assert messages.count("crasher restarted") == 4


def test_a_child_that_stayed_up_restarts_after_the_initial_delay_again() -> None:
    backoff = Backoff(initial_seconds=0.1, max_seconds=0.4, stable_seconds=0.3)
    messages = _supervise(0.5, backoff, messages_wanted=6)
    exits = [m for m in messages if "exited" in m]
    assert exits == ["crasher exited with code 3; restarting in 0.1 s"] * 3


def test_stop_ends_a_running_child() -> None:
    supervisor = Supervisor(dict(os.environ))
    supervisor.add("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor.start()
    supervisor.stop(timeout=5)
    child = supervisor._children[0].process
    assert child is not None
    assert child.returncode == -signal.SIGTERM
