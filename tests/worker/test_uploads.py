"""One email's objects are uploaded to the real S3 server, on the process's upload
threads or one after another: each distinct content once, all of them before the call
returns, and a failure reaches the caller."""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from loadkit import hostile_mail
from shared.objectstore import S3ObjectStore
from worker.ingest import parsing
from worker.ingest.rows import attachment_key, raw_message_key
from worker.ingest.storage.objects import store_email_objects


class CountingStore(S3ObjectStore):
    """The real S3 store, remembering the keys it was asked to write (a listing cannot
    tell one upload from two of the same key)."""

    def __init__(self, store: S3ObjectStore) -> None:
        super().__init__(store.client, store.bucket)
        self.puts: list[str] = []

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.puts.append(key)
        super().put(key, data, content_type)


def email_with_attachments(count: int) -> parsing.ParsedEmail:
    return parsing.parse_inbound(hostile_mail.inbound_event(hostile_mail.many_attachments(count)))


@pytest.mark.parametrize("threaded", [True, False], ids=["threads", "one-after-another"])
def test_every_object_is_stored_once_before_the_call_returns(
    object_store: S3ObjectStore, uploads: ThreadPoolExecutor, threaded: bool
) -> None:
    email = email_with_attachments(60)
    store_email_objects(object_store, email, uploads=uploads if threaded else None)
    assert object_store.get(raw_message_key(email.raw_sha256)) == email.raw
    for attachment in email.attachments:
        content = object_store.get(attachment_key(attachment.sha256))
        assert hashlib.sha256(content).hexdigest() == attachment.sha256


def test_the_same_content_twice_is_one_upload(
    object_store: S3ObjectStore, uploads: ThreadPoolExecutor
) -> None:
    tag = uuid.uuid4().hex.encode()
    raw = hostile_mail.many_attachments(2)
    email = parsing.parse_inbound(hostile_mail.inbound_event(raw))
    same = parsing.ParsedAttachment(
        filename="copy.bin",
        content_type="application/octet-stream",
        content=tag,
        sha256=hashlib.sha256(tag).hexdigest(),
        size=len(tag),
        content_id=None,
        inline=False,
    )
    doubled = parsing.ParsedEmail(
        **{
            name: getattr(email, name)
            for name in parsing.ParsedEmail.__dataclass_fields__
            if name != "attachments"
        },
        attachments=(same, same),
    )
    counting = CountingStore(object_store)
    store_email_objects(counting, doubled, uploads=uploads)
    key = attachment_key(same.sha256)
    assert counting.puts.count(key) == 1
    listed = object_store.client.list_objects_v2(Bucket=object_store.bucket, Prefix=key)
    assert [item["Key"] for item in listed["Contents"]] == [key]


def test_a_failed_upload_reaches_the_caller(
    object_store: S3ObjectStore, uploads: ThreadPoolExecutor
) -> None:
    missing = S3ObjectStore(object_store.client, f"kave-missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ClientError):
        store_email_objects(missing, email_with_attachments(10), uploads=uploads)
