"""Both object stores, the local directory and S3 (over HTTP to the S3 server)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from shared.objectstore import LocalObjectStore, ObjectNotFoundError, ObjectStore, S3ObjectStore


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    s3: S3ObjectStore = request.getfixturevalue("object_store")
    return s3


def test_put_get_exists_and_stream(store: ObjectStore) -> None:
    key = f"tests/{uuid.uuid4().hex}"
    data = os.urandom(700 * 1024)  # several stream chunks
    assert not store.exists(key)
    store.put(key, data)
    store.put(key, data)  # idempotent
    assert store.exists(key)
    assert store.get(key) == data
    chunks = list(store.stream(key, chunk_size=256 * 1024))
    assert len(chunks) == 3
    assert b"".join(chunks) == data


def test_missing_objects_raise_not_found(store: ObjectStore) -> None:
    key = f"tests/missing-{uuid.uuid4().hex}"
    with pytest.raises(ObjectNotFoundError):
        store.get(key)
    with pytest.raises(ObjectNotFoundError):
        next(store.stream(key))


@pytest.mark.parametrize(
    "key",
    [
        "../outside",
        "a/../../outside",
        "../objects-sibling/x",  # shares the root's name as a prefix
        str(Path("/tmp") / "outside"),  # absolute: joining it would drop the root
        "",
        ".",
    ],
)
def test_local_keys_cannot_escape_the_directory(tmp_path: Path, key: str) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put("inside", b"x")
    with pytest.raises(ValueError, match="escapes"):
        store.put(key, b"y")
    with pytest.raises(ValueError, match="escapes"):
        store.get(key)
    # Nothing was written anywhere but the one object inside.
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "objects",
        "objects/inside",
    ]


def test_local_put_makes_its_directories_and_leaves_nothing_aside(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put("a/b/c/deep", b"one")
    store.put("a/b/c/deep", b"one")  # again: replaced in place
    store.put("a/b/other", b"two")
    files = sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*"))
    assert files == ["a", "a/b", "a/b/c", "a/b/c/deep", "a/b/other"]
    assert store.get("a/b/c/deep") == b"one"
    assert (store.root / "a/b/other").stat().st_mode & 0o777 == 0o600


def test_list_stat_and_delete(store: ObjectStore) -> None:
    prefix = f"tests/list-{uuid.uuid4().hex}/"
    keys = [f"{prefix}a/1", f"{prefix}a/2", f"{prefix}b"]
    for key in keys:
        store.put(key, b"12345")
    listed = {o.key: o for o in store.list_objects(prefix)}
    assert sorted(listed) == sorted(keys)
    assert all(o.size == 5 and o.modified_at.tzinfo is not None for o in listed.values())
    stat = store.stat(keys[0])
    assert stat is not None
    assert stat.size == 5
    store.delete(keys[0])
    store.delete(keys[0])  # absent: harmless
    assert store.stat(keys[0]) is None
    assert sorted(o.key for o in store.list_objects(prefix)) == keys[1:]
