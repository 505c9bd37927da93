"""Reading a request body with a hard cap, refusing oversized bodies early."""

from __future__ import annotations

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
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
