"""Stored objects (raw messages, attachments) streamed as downloads a browser saves and
never renders."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from urllib.parse import quote

import structlog
from fastapi import Response
from fastapi.responses import StreamingResponse

from shared.objectstore import ObjectNotFoundError, ObjectStore
from shared.web.errors import NotFoundError, ServiceUnavailableError

log = structlog.get_logger(__name__)

_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


def safe_media_type(value: str | None) -> str:
    """The stored type without parameters when it is well-formed; octet-stream otherwise."""
    media_type = (value or "").split(";", 1)[0].strip().lower()
    return media_type if _MEDIA_TYPE.match(media_type) else "application/octet-stream"


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name in RFC 5987 form."""
    fallback = "".join(
        char if 32 <= ord(char) < 127 and char not in '"\\;' else "_" for char in filename
    )
    return f"attachment; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{quote(filename)}"


def download_headers(filename: str, media_type: str, sha256: str) -> dict[str, str]:
    """Bytes a browser must save, never render: ``attachment`` + ``nosniff`` + sandbox."""
    return {
        # Set as is: Starlette would append "charset=utf-8" to text types, which is a
        # guess about bytes it has not read.
        "Content-Type": media_type,
        "Content-Disposition": content_disposition(filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "ETag": f'"{sha256}"',
        "Cache-Control": "private, max-age=0",
    }


def stored_download(
    store: ObjectStore,
    key: str,
    sha256: str,
    *,
    size: int,
    filename: str,
    media_type: str,
    what: str,
) -> Response:
    """An object-store object streamed as a ``download``, never held whole in memory.

    The object is opened before the response starts, so a missing object or an
    unreachable store still gets a proper 404 or 503. Its bytes are checked against the
    sha256: an object that fits in one chunk is checked before anything is sent (503 if
    altered); a larger one is checked as it passes, and a mismatch (impossible unless
    the object was altered in the store) is logged. ``what`` names it for messages.
    """
    chunks = store.stream(key)
    try:
        first = next(chunks, b"")
        second = next(chunks, None)
    except ObjectNotFoundError:
        raise NotFoundError(f"{what} is missing from the object store") from None
    except Exception as exc:  # boto3/botocore or OS errors: the store, not the request
        log.error("objectstore.read_failed", key=key, error_type=type(exc).__name__)
        raise ServiceUnavailableError(
            "the object store is unreachable; try again shortly"
        ) from None
    if second is None and hashlib.sha256(first).hexdigest() != sha256:
        log.error("objectstore.digest_mismatch", key=key)
        raise ServiceUnavailableError(f"{what} does not match its sha256 in the object store")

    def checked() -> Iterator[bytes]:
        digest = hashlib.sha256(first)
        yield first
        if second is None:
            return
        digest.update(second)
        yield second
        for chunk in chunks:
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != sha256:
            log.error("objectstore.digest_mismatch", key=key)

    headers = {**download_headers(filename, media_type, sha256), "Content-Length": str(size)}
    return StreamingResponse(checked(), headers=headers)


def text_download(store: ObjectStore, key: str, *, filename: str, what: str) -> Response:
    """A derived text object (bounded by the conversion's output cap, so read whole) as a
    download, with the headers of :func:`download_headers`; its ETag is its own sha256."""
    try:
        data = store.get(key)
    except ObjectNotFoundError:
        raise NotFoundError(f"{what} is missing from the object store") from None
    except Exception as exc:  # boto3/botocore or OS errors: the store, not the request
        log.error("objectstore.read_failed", key=key, error_type=type(exc).__name__)
        raise ServiceUnavailableError(
            "the object store is unreachable; try again shortly"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    headers = download_headers(filename, "text/markdown; charset=utf-8", digest)
    return Response(content=data, headers={**headers, "Content-Length": str(len(data))})
