"""Reading a request body with a hard cap, refusing oversized bodies early."""

from __future__ import annotations

import io

from fastapi import Request

from receiver.errors import BadRequestError, PayloadTooLargeError


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body exceeds {limit} bytes; raise KAVE_MAX_BODY_BYTES if such mail is expected"
    )


async def read_body_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_size = int(declared)
        except ValueError:
            raise BadRequestError("Content-Length is not a number") from None
        # Refuse before reading a byte: a client announcing 1 GB gets its answer at once.
        if declared_size > limit:
            raise _too_large(limit)
    # One chunk is the whole body of most requests: keep it as it is. Larger bodies are
    # written into a BytesIO, whose buffer grows in place and whose getvalue() hands that
    # same buffer over as the bytes object: a 55 MB body costs 55 MB, not the 110 MB that
    # joining a list of chunks costs at its peak.
    first = b""
    buffer: io.BytesIO | None = None
    received = 0
    async for chunk in request.stream():
        if not chunk:
            continue
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        if buffer is not None:
            buffer.write(chunk)
        elif not first:
            first = chunk
        else:
            buffer = io.BytesIO()
            buffer.write(first)
            buffer.write(chunk)
            first = b""
    if buffer is None:
        return first
    body = buffer.getvalue()
    buffer.close()
    return body
