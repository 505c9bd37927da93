"""The operator commands on the filled database, as an operator runs them: ``kave``
subprocesses with the bench's settings, each timed, its peak memory (RSS, polled) and
its output lines (the progress it showed) counted.

The object store is an empty local directory: the filled rows name objects that were
never written, so the audit finds every one missing (it still asks the store about each:
the work it would do) and the erasure and purge delete nothing from the store.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.stack import REPO, child_env
from shared.settings import Settings


def run_command(settings: Settings, args: list[str], cwd: Path, **extra: str) -> dict[str, Any]:
    env = child_env(settings, **extra)
    started = time.perf_counter()
    # Into a file, not a pipe: a command printing more than a pipe holds would block
    # on it while this loop only watches its memory.
    log_path = cwd / f"kave-{args[0]}.log"
    with (
        log_path.open("wb") as log,
        subprocess.Popen(  # noqa: S603 - our own command line
            [sys.executable, "-m", "kave.cli", *args],
            cwd=cwd,
            env={**env, "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as process,
    ):
        peak = 0
        watched = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                peak = max(peak, watched.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.05)
    lines = log_path.read_text(errors="replace").splitlines()
    return {
        "command": "kave " + " ".join(args),
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "exit": process.returncode,
        "output_lines": len(lines),
        "last_line": lines[-1][:160] if lines else "",
    }


def operator_commands(settings: Settings, cwd: Path, erase_address: str) -> list[dict[str, Any]]:
    return [
        run_command(settings, ["purge", "--dry-run"], cwd, KAVE_RETENTION_EMAILS_DAYS="300"),
        run_command(settings, ["audit"], cwd),
        run_command(settings, ["erase", "--address", erase_address], cwd),
        # The oldest ten days of mail; archives kept (their retention drains one object
        # key per transaction: its own figure, from a smaller run).
        run_command(
            settings,
            ["purge"],
            cwd,
            KAVE_RETENTION_EMAILS_DAYS="355",
            KAVE_RETENTION_DEAD_LETTERS_DAYS="355",
            KAVE_RETENTION_ARCHIVE_DAYS="0",
        ),
        run_command(settings, ["reprocess", "--since", _days_ago(3), "--dry-run"], cwd),
    ]


def _days_ago(days: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(days=days)).isoformat()
