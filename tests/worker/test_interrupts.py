"""Celery's soft time limit is never swallowed: not by the parser's guards, not by the
ingest service, and the retry policy treats it as transient.

SoftTimeLimitExceeded is raised by a signal handler inside whatever line runs at that
moment; these tests raise it the same way (SIGALRM) in the middle of real parsing.
"""

from __future__ import annotations

import ast
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from loadkit import hostile_mail
from shared.settings import Settings
from tests.services import REPO
from worker.errors import GiveUp, RetryLater, decide, describe, is_rejected_row, is_transient
from worker.ingest import parsing
from worker.ingest.commit import _parse
from worker.ingest.parsing.values import guard

UNLIMITED = parsing.EmailLimits(
    max_mime_parts=10**9, max_nesting_depth=10**6, max_header_bytes=10**12, max_attachments=10**9
)


@contextmanager
def soft_time_limit_after(seconds: float) -> Iterator[None]:
    """Raise SoftTimeLimitExceeded from a signal handler, as billiard's pool does."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, handler)
    # Again every 50 ms: one that lands inside the stdlib's own broad handlers (which no
    # code of ours can help) must not make the test flaky; ours are audited below.
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def slow_event() -> dict[str, Any]:
    # Thousands of parts, parsed without limits: seconds of work in guarded code.
    return hostile_mail.inbound_event(hostile_mail.many_attachments(4000))


def test_the_soft_time_limit_escapes_the_parser() -> None:
    with pytest.raises(SoftTimeLimitExceeded), soft_time_limit_after(0.3):
        parsing.parse_inbound(slow_event(), UNLIMITED)


def test_the_soft_time_limit_escapes_the_ingest_parse_step() -> None:
    # _parse turns any parser failure into a permanent one, except this.
    with pytest.raises(SoftTimeLimitExceeded), soft_time_limit_after(0.3):
        _parse(lambda event: parsing.parse_inbound(event, UNLIMITED), slow_event())


def test_a_guarded_accessor_lets_it_through() -> None:
    def interrupted() -> str:
        raise SoftTimeLimitExceeded()

    with pytest.raises(SoftTimeLimitExceeded):
        guard(interrupted, "default")
    assert guard(lambda: {}["missing"], "default") == "default"


def test_it_is_transient_and_retried_with_backoff() -> None:
    exc = SoftTimeLimitExceeded()
    assert is_transient(exc)
    assert not is_rejected_row(exc)
    settings = Settings(_env_file=None, retry_deadline_seconds=3600)
    received = datetime.now(UTC)
    decision = decide(exc, retries=0, received_at=received, now=received, settings=settings)
    assert isinstance(decision, RetryLater)
    late = decide(
        exc,
        retries=50,
        received_at=received,
        now=received + timedelta(hours=2),
        settings=settings,
    )
    assert isinstance(late, GiveUp)
    assert late.error_class == "transient:SoftTimeLimitExceeded"
    assert describe(exc) == "SoftTimeLimitExceeded"


def _catches_everything(handler: ast.ExceptHandler) -> bool:
    names = []
    if handler.type is None:
        return True
    for node in ast.walk(handler.type):
        if isinstance(node, ast.Name):
            names.append(node.id)
    return "Exception" in names or "BaseException" in names


def _lets_interrupts_through(try_node: ast.Try, handler: ast.ExceptHandler) -> bool:
    earlier = try_node.handlers[: try_node.handlers.index(handler)]
    if any("INTERRUPTS" in ast.unparse(h.type) for h in earlier if h.type is not None):
        return True
    # A handler that re-raises what it caught, whatever it is.
    body = ast.Module(body=handler.body, type_ignores=[])
    return any(isinstance(node, ast.Raise) and node.exc is None for node in ast.walk(body))


# Handlers that catch everything on purpose: the base task hands the failure to the retry
# policy, which classifies a time limit as transient (tested above).
CLASSIFIED_BY_THE_RETRY_POLICY = {
    ("task_base.py", "run_with_retries"),
    # The conversion's own child process (worker/text/child.py): no Celery task runs in
    # it, so no soft time limit can reach it; its parent kills it at the wall time.
    ("child.py", "convert"),
}


def test_every_broad_except_in_the_worker_lets_interrupts_through() -> None:
    offenders = set()
    # Every module of the worker, its rooms' too.
    paths = sorted((REPO / "worker").rglob("*.py"))
    assert any(path.parent.name == "ingest" for path in paths)
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if not isinstance(node, ast.Try):
                    continue
                for handler in node.handlers:
                    if not _catches_everything(handler):
                        continue
                    if (path.name, function.name) in CLASSIFIED_BY_THE_RETRY_POLICY:
                        continue
                    if not _lets_interrupts_through(node, handler):
                        offenders.add(f"{path.relative_to(REPO)}:{handler.lineno}")
    assert sorted(offenders) == []
