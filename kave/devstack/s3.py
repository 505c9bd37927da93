"""An S3 server for tests and benchmarks: moto in server mode.

A real HTTP endpoint that boto3 talks to exactly as it talks to S3 or MinIO; objects
live in the server process's memory, so they last as long as it runs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from kave.devstack.commands import HOST, moto_command
from kave.devstack.processes import free_port, spawn, stop_process, wait_until


class MotoServer:
    """A moto server on a free port, started by the constructor and ready when it returns."""

    def __init__(self, log_path: Path | None = None, timeout: float = 30) -> None:
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self.process = spawn(
            moto_command(self.port), output=log_path if log_path else subprocess.DEVNULL
        )
        try:
            # Any answer below 500 from its own API means it serves.
            wait_until(
                lambda: httpx.get(self.endpoint + "/moto-api/", timeout=1).status_code < 500,
                timeout,
                "moto",
            )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        stop_process(self.process, timeout=10)


@contextmanager
def s3_server(log_path: Path | None = None) -> Iterator[str]:
    """The endpoint URL of a moto server that runs for the block."""
    server = MotoServer(log_path)
    try:
        yield server.endpoint
    finally:
        server.close()
