"""A process's memory as Linux counts it: resident now (VmRSS), its peak (VmHWM), and a
reset of that peak, so that the peak of one piece of work can be read exactly.

``pid`` is a process id, or ``"self"`` for the calling process.
"""

from __future__ import annotations

from pathlib import Path


def status_bytes(pid: int | str, name: str) -> int:
    """``VmRSS``, ``VmHWM`` (or another ``Vm*`` line) of ``/proc/<pid>/status``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(name)


def reset_peak(pid: int | str) -> bool:
    """Restart VmHWM from the current RSS (``echo 5 > /proc/<pid>/clear_refs``); False
    where the kernel or the permissions refuse, and the peak then includes what came before."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True
