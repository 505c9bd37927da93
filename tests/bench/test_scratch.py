"""The benchmark's scratch directory and the state it starts its stages from: what
`make bench` relies on to measure Kave rather than the machine's file system or an AOF
rewrite (bench/disk.py, bench/stack.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from bench import disk, stack
from kave.devstack import EmbeddedRedis
from tests.services import free_port


def test_the_probe_leaves_its_files_for_the_scratch_directory_removal(tmp_path: Path) -> None:
    cost = disk.file_create_us(tmp_path, samples=12)

    assert cost > 0
    # Deleting them would make the creations that follow costlier on a file system
    # without a journal: they go when the whole scratch directory goes.
    assert len([p for p in tmp_path.glob("disk-probe-*/*/object-*") if p.is_file()]) == 12


def _topdir_marked(directory: Path) -> bool:
    lsattr = subprocess.run(
        ["lsattr", "-d", str(directory)],
        capture_output=True,
        text=True,
        check=True,
    )
    return "T" in lsattr.stdout.split()[0]


def test_the_scratch_parent_spreads_its_directories_over_block_groups(tmp_path: Path) -> None:
    chattr, lsattr = shutil.which("chattr"), shutil.which("lsattr")
    if not chattr or not lsattr:
        pytest.skip("no e2fsprogs here")
    control = tmp_path / "control"
    control.mkdir()
    refused = subprocess.run([chattr, "+T", str(control)], capture_output=True, check=False)
    if refused.returncode != 0:
        pytest.skip("this file system takes no +T hint")

    parent = disk.scratch_parent(tmp_path / "var" / "bench")

    assert parent.is_dir()
    assert _topdir_marked(parent)
    assert not _topdir_marked(tmp_path / "var")


def test_compact_aof_rewrites_the_append_only_file_and_waits_for_it(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    url = server.start()
    client = redis.Redis.from_url(url)
    try:
        for index in range(200):
            client.set(f"body:{index}", b"x" * 10_000)
        client.flushdb()
        before = client.info("persistence")
        assert before["aof_current_size"] > 2_000_000  # the writes, then the flush

        stack.compact_aof(url)

        after = client.info("persistence")
        assert after["aof_rewrite_in_progress"] == 0
        assert after["aof_last_bgrewrite_status"] == "ok"
        # The rewritten file holds the empty dataset, not the history of the writes.
        assert after["aof_current_size"] < 10_000
    finally:
        client.close()
        server.stop()
