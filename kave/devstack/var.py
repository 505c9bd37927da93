"""What ``kave run`` keeps under ``./var`` between runs: dev secrets and the run file."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def dev_secret(path: Path, nbytes: int = 16) -> str:
    """A random secret kept in ``path`` (mode 0600), so it survives restarts of ``kave run``:
    Mandrill's configured key keeps matching, and API tokens stay valid."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    _write_private(path, value + "\n")
    return value


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Record the effective settings so that other ``kave`` commands can find the stack."""
    lines = [f"{name}={value}" for name, value in sorted(values.items())]
    _write_private(
        path, "# written by `kave run`; removed when it stops\n" + "\n".join(lines) + "\n"
    )
