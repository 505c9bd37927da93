"""What creating a file costs where the benchmark keeps its scratch directory.

The local object store creates a file for every object it puts (three for a ~100 KB
bench email), and the no-op task it is compared with creates none, so the worker's
ratios depend on this cost. It is a property of the machine's file system, and it is not
the same everywhere on one disk: on the 2-core VM of these benchmarks, ext4 took 0.5-1 ms
(kernel CPU) to create a file under ``/tmp`` and 0.05 ms under the repository's ``var/``
(docs/benchmarks-history.md, seventh session). The run records the figure next to the
machine's.

Why, on that VM: its ext4 has no journal, and without one the kernel does not reuse an
inode deleted in the last minute (six while its inode table block is not yet written
back). Each creation walks past every such inode of the block group (``recently_deleted``
in ``find_inode_bit``, perf), so a creation costs more the more files were deleted near
it just before: ``/tmp`` is where every tool deletes its files, and the receiver stage's
claim-checked bodies are deleted too (docs/benchmarks-history.md, eighth session). Hence
each run's scratch directory is placed away from the others (:func:`scratch`), and so is
each directory in it (``bench.run``: the receiver stage puts its bodies in a store of its
own), and the probe below leaves its files for the scratch directory's removal.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    directory under ``parent``, the way the local store lays its objects out. The files
    stay: deleting them would make the creations that follow costlier (see above), and
    they go with ``parent`` when the caller removes it."""
    probe = Path(tempfile.mkdtemp(prefix="disk-probe-", dir=parent))
    times: list[float] = []
    for index in range(samples):
        directory = probe / f"{index % FAN_OUT:02x}"
        directory.mkdir(exist_ok=True)
        started = time.perf_counter()
        fd = os.open(directory / f"object-{index}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        times.append(time.perf_counter() - started)
        os.close(fd)
    return round(statistics.median(times) * 1e6, 1)


def spread_subdirectories(directory: Path) -> None:
    """Mark ``directory`` as a top of directory hierarchies (``chattr +T``) where the
    file system takes the hint (ext2/3/4): the allocator (Orlov's) then picks a block
    group afresh for each subdirectory made in it, instead of its parent's, and the
    files of that subdirectory's tree follow it there, away from the inodes deleted in
    its siblings (see above). Elsewhere the mark is refused, harmlessly."""
    chattr = shutil.which("chattr")
    if chattr:
        subprocess.run(  # noqa: S603 - a path found just above, our own argument
            [chattr, "+T", str(directory)], capture_output=True, check=False
        )


def store_directory(scratch: Path, prefix: str) -> Path:
    """A new directory in ``scratch`` (marked by :func:`spread_subdirectories`) for a
    local object store, under a name no earlier run used: the allocator starts looking
    for a subdirectory's block group at a hash of its name, so a fixed name would put
    each run's store where the previous run's store was deleted."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=scratch))


def scratch_parent(parent: Path = SCRATCH_PARENT) -> Path:
    """``parent``, made if missing, for ``tempfile``'s ``dir=``: not the system's
    temporary directory, where a file creation may cost ten times more. Its scratch
    directories spread over block groups (:func:`spread_subdirectories`): a run does not
    create its files next to those an earlier run deleted with its scratch directory."""
    parent.mkdir(parents=True, exist_ok=True)
    spread_subdirectories(parent)
    return parent


@contextmanager
def scratch(prefix: str, parent: Path = SCRATCH_PARENT, *, keep: bool = False) -> Iterator[Path]:
    """A new scratch directory in :func:`scratch_parent` (absolute: it is handed to
    servers started elsewhere), its subdirectories spread over block groups too; removed
    at the end unless ``keep``. Every benchmark that puts objects makes its scratch here."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_parent(parent))).resolve()
    spread_subdirectories(path)
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
