"""One bounded conversion: bytes in, a :class:`Converted` out, within seconds whatever
the document.

The checks of ``worker.text.bounds`` come first (size, expansion). Then a fresh child
process (``worker.text.child``) converts, under an address-space limit (RLIMIT_AS: a
decompression bomb or a runaway parser fails its allocations, it cannot take the node's
memory), a CPU-time limit, no file writes, and a wall-time bound after which it is
killed (SIGKILL: a converter stuck in native code does not answer a polite signal). A
process per job, not a thread or a pool: the limits are per process, and a child that
was killed or aborted takes nothing of the worker with it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import metadata

import structlog

from worker.ingest.derive.text_formats import FAILED, READY
from worker.text.bounds import Bounds, over_bound

log = structlog.get_logger(__name__)

# Kave's own conversion version: raise it when what is stored changes (options, cleanup),
# and `kave reprocess --text` converts again what an older version made.
CONVERSION_VERSION = 1
# Killed by the kernel or aborted on a failed allocation (Rust aborts, C++ throws).
_MEMORY_SIGNALS = frozenset({signal.SIGKILL, signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS})


@dataclass(frozen=True, slots=True)
class Limits:
    bounds: Bounds
    timeout_seconds: float
    memory_bytes: int
    max_pages: int
    max_characters: int


@dataclass(frozen=True, slots=True)
class Converted:
    status: str  # ready, failed, skipped:<bound>
    text: str | None = None
    pages: int | None = None
    seconds: float = 0.0
    error: str | None = None  # an exception class or a signal name, never document text


@cache
def extractor() -> str:
    """What converts, with its version, as stored in ``attachments.text_extractor``."""
    return f"kreuzberg {metadata.version('kreuzberg')}"


def convert(data: bytes, mime_type: str, limits: Limits) -> Converted:
    started = time.monotonic()
    bound = over_bound(data, limits.bounds)
    if bound is not None:
        return Converted(f"skipped:{bound}", seconds=time.monotonic() - started)
    with tempfile.TemporaryDirectory(prefix="kave-text-") as home:
        try:
            done = subprocess.run(  # noqa: S603 - our own module, fixed arguments
                [
                    sys.executable,
                    "-m",
                    "worker.text.child",
                    mime_type,
                    str(limits.max_pages),
                    str(limits.max_characters),
                ],
                input=data,
                capture_output=True,
                timeout=limits.timeout_seconds,
                env=_child_environment(home),
                cwd=home,
                preexec_fn=_limit(limits),
                check=False,
            )
        except subprocess.TimeoutExpired:
            # subprocess.run killed it (SIGKILL) and reaped it.
            return Converted("skipped:time", seconds=time.monotonic() - started)
    seconds = time.monotonic() - started
    if done.returncode < 0:
        signo = signal.Signals(-done.returncode)
        status = "skipped:memory" if signo in _MEMORY_SIGNALS else FAILED
        if signo == signal.SIGXCPU:
            status = "skipped:time"
        return Converted(status, seconds=seconds, error=signo.name)
    try:
        outcome = json.loads(done.stdout)
    except ValueError:
        # Died without an answer: a failed allocation in Python ends in MemoryError text.
        memory = b"MemoryError" in done.stderr[-4096:]
        status = "skipped:memory" if memory else FAILED
        return Converted(status, seconds=seconds, error=f"exit_{done.returncode}")
    status = str(outcome.get("status", FAILED))
    pages = outcome.get("pages") if isinstance(outcome.get("pages"), int) else None
    text = outcome.get("text") if status == READY else None
    return Converted(status, text, pages, seconds, outcome.get("error"))


def _child_environment(home: str) -> dict[str, str]:
    """A bare environment: no secrets of the worker's, one thread for the converter."""
    keep = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL") if name in os.environ}
    return {
        **keep,
        "HOME": home,
        "TMPDIR": home,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "RAYON_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _limit(limits: Limits) -> Callable[[], None]:
    cpu = int(limits.timeout_seconds) + 2

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()  # its own process group: nothing it starts outlives the kill

    return apply
