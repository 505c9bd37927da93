"""ClamAV's daemon for tests: Debian's ``clamd`` started as a real process on a Unix
socket, with a signature database of one hand-written signature for the EICAR test file
(freshclam cannot download the real databases here). Tests skip when clamd is not
installed (``.ci/run`` installs ``clamav-daemon``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# The EICAR anti-malware test file (eicar.org), built at run time so that no file of this
# repository is itself flagged by a scanner.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!" + b"$H+H*"
SIGNATURE_NAME = "Kave-Test-Eicar"


def clamd_binary() -> str:
    found = shutil.which("clamd") or (
        "/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else None
    )
    if found is None:
        pytest.skip("clamd is not installed (apt-get install clamav-daemon)")
    return found


@contextmanager
def clamd_process() -> Iterator[Path]:
    """A running clamd; yields its socket path. Stopped (and its files removed) after."""
    binary = clamd_binary()
    workdir = Path(tempfile.mkdtemp(prefix="kave-clamd-"))
    database = workdir / "db"
    database.mkdir()
    # A body signature (.ndb): name, any file type (0), any offset (*), the bytes in hex.
    (database / "kave-test.ndb").write_text(f"{SIGNATURE_NAME}:0:*:{EICAR.hex()}\n")
    socket_path = workdir / "clamd.sock"
    config = workdir / "clamd.conf"
    config.write_text(
        f"LocalSocket {socket_path}\n"
        f"DatabaseDirectory {database}\n"
        f"PidFile {workdir / 'clamd.pid'}\n"
        f"TemporaryDirectory {workdir}\n"
        "Foreground yes\n"
        f"LogFile {workdir / 'clamd.log'}\n"
        "StreamMaxLength 1M\n"
        "MaxThreads 2\n"
    )
    process = subprocess.Popen(
        [binary, "--config-file", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not _answers(socket_path):
            if process.poll() is not None:
                errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise AssertionError(f"clamd exited {process.returncode}: {errors[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("clamd did not answer PING within 60 s")
            time.sleep(0.1)
        yield socket_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(str(path))
            sock.sendall(b"zPING\0")
            return sock.recv(64).startswith(b"PONG")
    except OSError:
        return False
