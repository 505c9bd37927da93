"""The raw message and attachments of an email, put in the object store under their sha256."""

from __future__ import annotations

from concurrent.futures import Executor

from shared.objectstore import ObjectStore
from worker.ingest.parsing import ParsedEmail
from worker.ingest.rows import attachment_key, raw_message_key
from worker.pending_puts import PendingPuts


def email_objects(email: ParsedEmail) -> dict[str, tuple[bytes, str]]:
    """The objects of an email by key: its raw message and each distinct attachment."""
    objects: dict[str, tuple[bytes, str]] = {
        raw_message_key(email.raw_sha256): (email.raw, "message/rfc822")
    }
    for attachment in email.attachments:
        objects.setdefault(
            attachment_key(attachment.sha256), (attachment.content, attachment.content_type)
        )
    return objects


def store_email_objects(
    store: ObjectStore, email: ParsedEmail, *, uploads: Executor | None = None
) -> None:
    """Upload the raw message and each attachment; returns once every one is stored
    (see :func:`start_email_objects`)."""
    start_email_objects(store, email, uploads=uploads).wait()


def start_email_objects(
    store: ObjectStore, email: ParsedEmail, *, uploads: Executor | None = None
) -> PendingPuts:
    """Start uploading the raw message and each attachment.

    Keys are content-addressed: each distinct content is uploaded once (two attachments
    with the same bytes are one object), and uploading it again on a redelivery stores
    the same bytes. With ``uploads`` (the process's upload threads: boto3 clients are
    thread-safe) the objects are put at once and this returns while they are under way,
    else they are put here, one after another. The caller commits the rows that name
    them only after :meth:`PendingPuts.wait` returned, so a committed row never names a
    missing object.
    """
    objects = email_objects(email)
    if uploads is None:
        for key, (data, content_type) in objects.items():
            store.put(key, data, content_type)
        return PendingPuts()
    return PendingPuts(
        [
            uploads.submit(store.put, key, data, content_type)
            for key, (data, content_type) in objects.items()
        ]
    )
