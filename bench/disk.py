"""What creating a file costs where the benchmark keeps its scratch directory.

The local object store creates a file for every object it puts (three for a ~100 KB
bench email), and the no-op task it is compared with creates none, so the worker's
ratios depend on this cost. It is a property of the machine's file system, and it is not
the same everywhere on one disk: on the 2-core VM of these benchmarks, ext4 took 0.5-1 ms
(kernel CPU) to create a file under ``/tmp`` and 0.05 ms under the repository's ``var/``
(BENCHMARKS.md, seventh session). The run records the figure next to the machine's.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

# Where the benchmarks make their scratch directories (relative to the working
# directory, like var/objects, the local store of `make run`).
SCRATCH_PARENT = Path("var/bench")
SAMPLES = 200
# The store spreads each kind of object over 256 directories (``sha256[:2]``,
# worker/storage.py); 64 here puts a few files in each, as a store that is filling up.
FAN_OUT = 64


def file_create_us(parent: Path, samples: int = SAMPLES) -> float:
    """Median wall time (microseconds) to create and close an empty file in a fresh
    directory under ``parent``, the way the local store lays its objects out."""
    scratch = Path(tempfile.mkdtemp(prefix="disk-probe-", dir=parent))
    try:
        times: list[float] = []
        for index in range(samples):
            directory = scratch / f"{index % FAN_OUT:02x}"
            directory.mkdir(exist_ok=True)
            started = time.perf_counter()
            fd = os.open(directory / f"object-{index}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            times.append(time.perf_counter() - started)
            os.close(fd)
        return round(statistics.median(times) * 1e6, 1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def scratch_parent(parent: Path = SCRATCH_PARENT) -> Path:
    """``parent``, made if missing, for ``tempfile``'s ``dir=``: not the system's
    temporary directory, where a file creation may cost ten times more."""
    parent.mkdir(parents=True, exist_ok=True)
    return parent
