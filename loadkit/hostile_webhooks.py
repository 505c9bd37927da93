"""Hostile webhook bodies, and a client that reads an answer given before the body.

The bodies (:data:`HOSTILE`, built by :func:`hostile_bodies`) are what a client that is
not Mandrill may post to the webhook: 8 MB of ``&a``, 8 MB of ``%``, 100,000 fields,
8 MB of nested JSON. :data:`EXPECTED_SIGNED` is the answer each gets with a wrong
signature. :func:`post_raw` sends a body over a plain socket and stops at the first
answer, as the receiver may refuse before reading the body.

Used by ``tests/receiver/test_hostile_webhooks.py`` (which checks the answers) and the
bench's ``webhooks`` stage (which measures them).
"""

from __future__ import annotations

import http.client
import select
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from shared.webhook import WEBHOOK_PATH

FORM = "application/x-www-form-urlencoded"
# Any well-formed signature that is not the body's.
FORGED_SIGNATURE = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
MIB = 1024 * 1024


def amp_body(size: int) -> bytes:
    """The issue's body: a tiny batch, then one-byte fields (``&a``) to the size."""
    head = b"mandrill_events=%5B%7B%7D%5D"
    return head + b"&a" * ((size - len(head)) // 2)


def percent_body(size: int) -> bytes:
    """One field whose name is ``size`` percent signs (invalid escapes, kept as they are)."""
    return b"%" * size


def many_fields_body(_size: int, fields: int = 100_000) -> bytes:
    return b"mandrill_events=%5B%5D&" + b"&".join(b"f%d=1" % i for i in range(fields))


def deep_json_body(size: int) -> bytes:
    """A batch of nested arrays ``[[[...]]]`` (valid form encoding; never parsed here)."""
    depth = (size - len("mandrill_events=")) // 2
    return b"mandrill_events=" + b"[" * depth + b"]" * depth


HOSTILE: dict[str, Callable[[int], bytes]] = {
    "8MB of &a": amp_body,
    "8MB of %": percent_body,
    "100,000 fields": many_fields_body,
    "deep JSON": deep_json_body,
}
# The answer each body gets with a (wrong) signature header; without one it is 401.
EXPECTED_SIGNED = {"8MB of &a": 400, "8MB of %": 400, "100,000 fields": 400, "deep JSON": 401}


def hostile_bodies(size: int = 8 * MIB) -> dict[str, bytes]:
    return {name: build(size) for name, build in HOSTILE.items()}


def post_raw(
    base: str, body: bytes, headers: dict[str, str], *, timeout: float = 60.0
) -> tuple[int, float, int]:
    """POST ``body`` over a plain socket; (status, seconds, body bytes the server took).

    A receiver may answer before it has read the body (and then close the connection):
    this client sends in pieces and stops as soon as an answer arrives, where httpx would
    fail on the write and lose the answer.
    """
    parts = urlsplit(base)
    started = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
        lines = [f"POST {WEBHOOK_PATH} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        sock.sendall("\r\n".join(lines).encode("latin-1"))
        sent = 0
        view = memoryview(body)
        sock.setblocking(False)
        while sent < len(body):
            readable, writable, _ = select.select([sock], [sock], [], timeout)
            if readable:
                break  # an answer (or a close) before the whole body was taken
            if not writable:
                raise TimeoutError(f"the receiver took no byte for {timeout} s")
            try:
                sent += sock.send(view[sent : sent + 256 * 1024])
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        sock.settimeout(timeout)
        status = _read_status(sock)
    return status, time.perf_counter() - started, sent


def _read_status(sock: socket.socket) -> int:
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
    except (ConnectionResetError, http.client.RemoteDisconnected):
        return 0  # no answer at all: reported as status 0
    response.close()
    return response.status
