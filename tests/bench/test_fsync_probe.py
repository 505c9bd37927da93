"""The fsync probe of the time-to-agent stage (loadkit/fsync_probe.py), on a real file."""

from __future__ import annotations

import time
from pathlib import Path

from loadkit.fsync_probe import FsyncProbe


def test_the_probe_times_fsyncs_until_the_block_ends_and_leaves_no_file(tmp_path: Path) -> None:
    with FsyncProbe(tmp_path, interval=0.01) as probe:
        time.sleep(0.2)
    samples = probe.samples

    assert samples >= 2
    assert 0 < probe.max_ms == max(probe.latencies_ms)
    assert list(tmp_path.iterdir()) == []
    time.sleep(0.05)
    assert probe.samples == samples  # stopped with the block
