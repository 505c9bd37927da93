"""Running the ``kave`` command as a real process, and ``kave run`` in the background."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kave.devstack import wait_for_http
from shared.settings import Settings
from tests.services import REPO, child_env, free_port, wait_until

KAVE = [sys.executable, "-m", "kave.cli"]


def kave(
    args: list[str], env: dict[str, str], cwd: Path = REPO, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KAVE, *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def kave_with_settings(args: list[str], settings: Settings) -> subprocess.CompletedProcess[str]:
    """``kave ARGS`` configured by ``settings`` (as a deployed process would be)."""
    return kave(args, child_env(settings))


def env_without_kave_settings() -> dict[str, str]:
    """A machine with nothing configured: `kave run` starts embedded services."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KAVE_")}


@dataclass
class KaveRun:
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    api_port: int
    flower_port: int
    exit_code: int | None = None

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


@contextmanager
def kave_run(cwd: Path, env: dict[str, str], log_name: str = "run.log") -> Iterator[KaveRun]:
    """`kave run` in ``cwd``, once its receiver, API and worker are ready; stopped with
    Ctrl-C (SIGINT) after."""
    port, api_port, flower_port = free_port(), free_port(), free_port()
    log_path = cwd / log_name
    command = [*KAVE, "run", "--port", str(port), "--api-port", str(api_port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--flower-port", str(flower_port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    run = KaveRun(process, log_path, port, api_port, flower_port)
    try:

        def started_or_exited() -> bool:
            return process.poll() is not None or b"Kave is running" in log_path.read_bytes()

        # A `kave run` that refused to start has exited: say so at once, with its output.
        wait_until(started_or_exited, 120, "kave run")
        if process.poll() is not None:
            raise AssertionError(f"kave run exited {process.returncode}: {run.output}")
        wait_until(lambda: b"ready." in log_path.read_bytes(), 60, "its worker")
        wait_for_http(f"http://127.0.0.1:{port}/healthz", 30, "its receiver")
        wait_for_http(run.api_base + "/healthz", 30, "its API")
        yield run
    finally:
        process.send_signal(signal.SIGINT)
        run.exit_code = process.wait(timeout=60)
