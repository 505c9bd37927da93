"""Starting, waiting for and stopping the processes of a dev stack.

Each helper starts a real process with a command line from :mod:`kave.devstack.commands`
and waits until it serves: the receiver and the API answer ``/healthz``, a worker logs
"ready.".
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from kave.devstack.commands import HOST, celery_worker_command, uvicorn_command


class DevStackError(RuntimeError):
    """A dev-stack service could not be started; the message says why."""


def free_port(preferred: int = 0) -> int:
    """``preferred`` if nothing listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            bound: int = sock.getsockname()[1]
            return bound
    raise DevStackError(f"no free TCP port on {HOST}")


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``check`` until it is true; an exception counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout} s")


def wait_for_http(url: str, timeout: float, what: str, *, status: int = 200) -> None:
    wait_until(lambda: httpx.get(url, timeout=1).status_code == status, timeout, what)


def wait_for_log(
    log_path: Path, marker: bytes, timeout: float, what: str, *, start: int = 0
) -> None:
    """Until ``marker`` appears in the log after byte ``start`` (what earlier runs wrote)."""

    def logged() -> bool:
        with log_path.open("rb") as handle:
            handle.seek(start)
            return marker in handle.read()

    wait_until(logged, timeout, what)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, and SIGKILL if it has not ended within ``timeout``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kill_group(pgid: int) -> None:
    """SIGKILL a process group (a ``spawn(..., new_session=True)`` process's pid): what a
    dead main process left behind, such as a Celery worker's pool children."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left of it
        os.killpg(pgid, signal.SIGKILL)


def spawn(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    output: Path | int | None = None,
    cwd: Path | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``command``; ``output`` is a log file appended to, subprocess.DEVNULL, or
    None for this process's own stdout. ``new_session``: a process group of its own, so
    that a terminal's Ctrl-C does not reach it and its children can be killed with it."""
    if isinstance(output, Path):
        with output.open("ab") as log:
            return subprocess.Popen(
                command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=new_session,
            )  # fmt: skip
    return subprocess.Popen(
        command, env=env, cwd=cwd, stdout=output,
        stderr=None if output is None else subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=new_session,
    )  # fmt: skip


@contextmanager
def running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """``process`` for the block, stopped after it."""
    try:
        yield process
    finally:
        stop_process(process)


@contextmanager
def uvicorn_server(
    app_factory: str,
    env: Mapping[str, str],
    log_path: Path,
    *,
    workers: int | None = None,
    options: Sequence[str] = (),
    cwd: Path | None = None,
    timeout: float = 30,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A uvicorn serving ``app_factory`` on a free port: (base URL, process), once healthy."""
    port = free_port()
    command = uvicorn_command(app_factory, port, workers=workers, options=options)
    process = spawn(command, env=env, output=log_path, cwd=cwd)
    base = f"http://{HOST}:{port}"
    with running(process):
        wait_for_http(base + "/healthz", timeout, app_factory)
        yield base, process


def start_celery_worker(
    app: str,
    queue: str,
    env: Mapping[str, str],
    log_path: Path,
    *,
    concurrency: int,
    node: str,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.Popen[bytes]:
    """A real prefork ``celery worker`` on ``queue``, returned once it is ready.

    It runs in a session of its own, so that a test can kill it with its children.
    """
    start = log_path.stat().st_size if log_path.exists() else 0
    command = celery_worker_command(app, queue, concurrency=concurrency, node=node)
    process = spawn(command, env=env, output=log_path, cwd=cwd, new_session=True)
    try:
        wait_for_log(log_path, b"ready.", timeout, f"celery worker {node}", start=start)
    except BaseException:
        stop_process(process)
        raise
    return process
