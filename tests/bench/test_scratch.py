"""The benchmark's scratch directory: what `make bench` relies on to measure Kave's object
puts rather than the inodes that earlier runs and stages deleted (loadkit/disk.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from loadkit import disk


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


def test_a_scratch_directory_and_its_parent_spread_their_directories(tmp_path: Path) -> None:
    chattr, lsattr = shutil.which("chattr"), shutil.which("lsattr")
    if not chattr or not lsattr:
        pytest.skip("no e2fsprogs here")
    control = tmp_path / "control"
    control.mkdir()
    refused = subprocess.run([chattr, "+T", str(control)], capture_output=True, check=False)
    if refused.returncode != 0:
        pytest.skip("this file system takes no +T hint")
    parent = tmp_path / "var" / "bench"

    with disk.scratch("kave-bench-", parent) as scratch:
        assert scratch.is_dir()
        assert scratch.parent == parent.resolve()
        assert _topdir_marked(parent)
        assert _topdir_marked(scratch)
    assert not _topdir_marked(tmp_path / "var")
    assert not scratch.exists()  # removed at the end


def test_a_scratch_directory_kept_on_request(tmp_path: Path) -> None:
    with disk.scratch("kave-bench-", tmp_path, keep=True) as scratch:
        (scratch / "worker.log").write_text("kept")

    assert (scratch / "worker.log").read_text() == "kept"


def test_each_store_directory_has_a_name_no_other_run_used(tmp_path: Path) -> None:
    # The allocator starts its search for a subdirectory's block group at a hash of the
    # name: a fixed name would put every run's store where the last one was deleted.
    first = disk.store_directory(tmp_path, "objects-")
    second = disk.store_directory(tmp_path, "objects-")

    assert first.is_dir()
    assert second.is_dir()
    assert first.parent == second.parent == tmp_path
    assert first.name != second.name
    assert first.name.startswith("objects-")
