"""Hostile inbound emails, built small and fast: for the tests of the worker's limits
(``tests/worker/test_limits.py``, ``test_hostile_input.py``) and the bench's ``mail`` stage.

Every builder returns ``raw_msg`` text; :func:`inbound_event` wraps it as Mandrill does.
Contents are numbered so that no two parts are the same bytes (deduplication would
otherwise hide the cost of storing them).
"""

from __future__ import annotations

import uuid
from typing import Any

_HEAD = (
    "From: Hostile <hostile@example.org>\r\n"
    "To: inbox@example.com\r\n"
    "Subject: {subject}\r\n"
    "Message-ID: <{tag}@example.org>\r\n"
    "MIME-Version: 1.0\r\n"
)


def _head(subject: str) -> str:
    return _HEAD.format(subject=subject, tag=uuid.uuid4().hex)


def parts_bomb(parts: int, subject: str = "parts bomb") -> str:
    """One multipart with ``parts`` tiny attachment parts (about 33 bytes each)."""
    body = "".join(f"--B\r\nContent-Type: image/x\r\n\r\n{i}\r\n" for i in range(parts))
    return (
        _head(subject) + 'Content-Type: multipart/mixed; boundary="B"\r\n\r\n' + body + "--B--\r\n"
    )


def deep_nesting(depth: int, subject: str = "deep nesting") -> str:
    """Multiparts nested ``depth`` levels deep around one text part."""
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="N{level}"\r\n\r\n--N{level}\r\n'
        for level in range(depth)
    )
    closing = "".join(f"--N{level}--\r\n" for level in reversed(range(depth)))
    return _head(subject) + opening + "Content-Type: text/plain\r\n\r\nleaf\r\n" + closing


def huge_headers(total_bytes: int, line_bytes: int = 64, subject: str = "huge headers") -> str:
    """A plain message whose header section is about ``total_bytes`` long, in headers of
    ``line_bytes`` each (short ones are the expensive kind: one object per header)."""
    value = "v" * max(line_bytes - 12, 1)
    count = total_bytes // (len(value) + 12)
    headers = "".join(f"X-H{i:06d}: {value}\r\n" for i in range(count))
    return _head(subject) + headers + "\r\nbody\r\n"


def many_attachments(count: int, size: int = 64, subject: str = "many attachments") -> str:
    """A multipart with a text body and ``count`` distinct base64 attachments."""
    import base64

    parts = ["--A\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"]
    for i in range(count):
        content = f"{i:08d}".encode().ljust(size, b".")
        parts.append(
            "--A\r\nContent-Type: application/octet-stream\r\n"
            f'Content-Disposition: attachment; filename="f{i}.bin"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
            f"{base64.b64encode(content).decode()}\r\n"
        )
    return (
        _head(subject)
        + 'Content-Type: multipart/mixed; boundary="A"\r\n\r\n'
        + "".join(parts)
        + "--A--\r\n"
    )


def inbound_event(raw: str, recipient: str = "inbox@example.com", **msg: Any) -> dict[str, Any]:
    return {
        "event": "inbound",
        "ts": 1700000000,
        "msg": {"raw_msg": raw, "email": recipient, **msg},
    }
