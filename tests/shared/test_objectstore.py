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


def test_local_keys_cannot_escape_the_directory(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    with pytest.raises(ValueError, match="escapes"):
        store.put("../outside", b"x")
    assert not (tmp_path / "outside").exists()


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
