"""The object-store interface and its two implementations.

Keys are always built by Kave from sha256 digests (see ``shared.contract`` and
``worker.ingest.storage``), never from user input, so writing the same content twice writes the
same key: puts are idempotent and there is one object per distinct content.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from shared.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


STREAM_CHUNK_BYTES = 256 * 1024
# A put in progress (or one a crash left behind): listings skip it, it names nothing.
TEMP_PREFIX = ".tmp-"
_CREATE_ASIDE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


class ObjectNotFoundError(KeyError):
    """The key does not exist in the store."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object as a listing sees it: its key, size and when it was last written."""

    key: str
    size: int
    modified_at: datetime


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store ``data`` under ``key``; storing the same bytes again is harmless."""

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`ObjectNotFoundError` when absent."""

    def exists(self, key: str) -> bool: ...

    def stream(self, key: str, chunk_size: int = STREAM_CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes under ``key`` in chunks, without holding the whole object.

        The object is opened when the first chunk is asked for; a missing key raises
        :class:`ObjectNotFoundError` there.
        """

    def describe(self) -> str:
        """Where objects live, for people (no credentials)."""

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object whose key starts with ``prefix``, in pages (never all at once)."""

    def stat(self, key: str) -> StoredObject | None:
        """The object under ``key``, or None when absent."""

    def delete(self, key: str) -> None:
        """Remove the object; deleting an absent key is harmless."""


class LocalObjectStore:
    """A directory on disk: the development default, same interface as S3."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._root_prefix = os.path.join(self.root, "")  # "/root/": not "/root-x"

    def _path(self, key: str) -> Path:
        # Normalised as text, not resolved: resolve() costs a system call per path
        # component, on each of an email's three puts, and what this guards against is
        # a key with ".." or an absolute path. The keys are Kave's own (see the module's
        # docstring); a symlink inside the store is the store owner's doing (a
        # subdirectory mounted elsewhere) and is followed.
        path = os.path.normpath(os.path.join(self._root_prefix, key))
        if not path.startswith(self._root_prefix):
            raise ValueError(f"object key escapes the store: {key!r}")
        return Path(path)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        # Write aside, then rename: readers never see half an object, and two workers
        # writing the same content-addressed key cannot corrupt it. The name aside is
        # random and created exclusively, as tempfile.mkstemp does, without its name
        # generator and argument checks (a tenth of a put's CPU); the directory is made
        # only when it is missing.
        tmp = os.path.join(os.path.dirname(path), f"{TEMP_PREFIX}{secrets.token_hex(8)}")
        try:
            fd = os.open(tmp, _CREATE_ASIDE, 0o600)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, _CREATE_ASIDE, 0o600)
        try:
            with open(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(key) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stream(self, key: str, chunk_size: int = STREAM_CHUNK_BYTES) -> Iterator[bytes]:
        try:
            handle = self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(key) from exc
        with handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def describe(self) -> str:
        return f"local directory {self.root}"

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        if not self.root.is_dir():
            return
        for directory, dirs, files in os.walk(self.root):
            dirs.sort()
            for name in sorted(files):
                if name.startswith(TEMP_PREFIX):
                    continue  # a put in progress (or one a crash left; it names nothing)
                path = Path(directory) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found = self._stat_path(key, path)
                    if found is not None:
                        yield found

    def stat(self, key: str) -> StoredObject | None:
        return self._stat_path(key, self._path(key))

    @staticmethod
    def _stat_path(key: str, path: Path) -> StoredObject | None:
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        return StoredObject(key, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3ObjectStore:
    """Any S3-compatible server (AWS S3, MinIO) through boto3."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey as exc:
            raise ObjectNotFoundError(key) from exc
        return response["Body"].read()

    def stream(self, key: str, chunk_size: int = STREAM_CHUNK_BYTES) -> Iterator[bytes]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey as exc:
            raise ObjectNotFoundError(key) from exc
        body = response["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def describe(self) -> str:
        endpoint = self.client.meta.endpoint_url
        return f"s3://{self.bucket} at {endpoint}"

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield StoredObject(item["Key"], item["Size"], item["LastModified"])

    def stat(self, key: str) -> StoredObject | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return StoredObject(key, head["ContentLength"], head["LastModified"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


def make_s3_client(settings: Settings) -> S3Client:
    import boto3
    from botocore.config import Config

    secret = settings.s3_secret_access_key
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=Config(
            connect_timeout=settings.s3_connect_timeout_seconds,
            read_timeout=settings.s3_read_timeout_seconds,
            retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
            # Path-style addressing works with MinIO and moto without DNS tricks.
            s3={"addressing_style": "path"},
        ),
    )


def make_object_store(settings: Settings) -> ObjectStore:
    if settings.object_store == "s3":
        assert settings.s3_bucket  # guaranteed by Settings validation
        return S3ObjectStore(make_s3_client(settings), settings.s3_bucket)
    return LocalObjectStore(settings.local_store_dir)
