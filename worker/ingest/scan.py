"""Malware scanning of attachments with ClamAV's daemon (off unless KAVE_MALWARE_SCAN).

Each attachment's bytes are streamed to clamd over its socket with the ``INSTREAM``
command: ``zINSTREAM\\0``, then chunks each prefixed by its length (4 bytes, network
order), then a zero length; clamd answers ``stream: OK``, ``stream: <name> FOUND`` or
``... ERROR``. Hand-written: the protocol is these few lines, and the Python clients are
GPL (clamav-client) or unmaintained since 2014 (clamd).

- a match: ``quarantined``, with the signature's name; the API refuses the bytes (and any
  text of them) and the hand-off marks it;
- clamd unreachable, timing out or answering an error (a stream over its
  ``StreamMaxLength`` too): tried ``attempts`` times with a short backoff, then
  ``unscanned``: never ``clean`` without clamd having said so. Once clamd has failed for
  an email, its remaining attachments are not tried again (the wait stays bounded).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

import structlog

from worker.ingest.parsing import ParsedAttachment

log = structlog.get_logger(__name__)

CLEAN: Final = "clean"
QUARANTINED: Final = "quarantined"
UNSCANNED: Final = "unscanned"

CHUNK: Final = 64 * 1024
SIGNATURE_CHARS: Final = 255
BACKOFF_SECONDS: Final = 0.2


class ScannerUnavailable(Exception):
    """clamd could not give a verdict (down, timed out, or answered an error)."""


class Scanner:
    """Streams bytes to one clamd (``address``: a Unix socket path or ``host:port``)."""

    def __init__(self, address: str, timeout: float = 30.0, attempts: int = 3) -> None:
        self.address = address
        self.timeout = timeout
        self.attempts = attempts

    def _connect(self) -> socket.socket:
        if "/" in self.address:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: Any = self.address
        else:
            host, _, port = self.address.rpartition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            target = (host.strip("[]"), int(port))
        sock.settimeout(self.timeout)
        try:
            sock.connect(target)
        except BaseException:
            sock.close()
            raise
        return sock

    def scan_bytes(self, data: bytes) -> str | None:
        """The signature found in ``data``, or None when clean; raises
        :class:`ScannerUnavailable` when clamd gives no verdict."""
        try:
            with self._connect() as sock:
                sock.sendall(b"zINSTREAM\0")
                view = memoryview(data)
                for start in range(0, len(view), CHUNK):
                    chunk = view[start : start + CHUNK]
                    sock.sendall(struct.pack("!L", len(chunk)) + chunk)
                sock.sendall(struct.pack("!L", 0))
                reply = _read_reply(sock)
        except OSError as exc:
            raise ScannerUnavailable(type(exc).__name__) from exc
        if reply.endswith(" FOUND"):
            name = reply.removeprefix("stream:").removesuffix(" FOUND").strip()
            return name[:SIGNATURE_CHARS] or "unnamed"
        if reply.endswith("OK"):
            return None
        raise ScannerUnavailable(reply[:100])

    def scan(self, data: bytes) -> tuple[str, str | None]:
        """(status, signature) for one attachment, with the bounded retry."""
        for attempt in range(self.attempts):
            try:
                found = self.scan_bytes(data)
            except ScannerUnavailable as exc:
                log.warning("scan.unavailable", attempt=attempt + 1, error=str(exc))
                if attempt + 1 < self.attempts:
                    time.sleep(BACKOFF_SECONDS * 2**attempt)
                continue
            return (QUARANTINED, found) if found else (CLEAN, None)
        return UNSCANNED, None

    def scan_all(self, attachments: Iterable[ParsedAttachment]) -> Sequence[dict[str, Any]]:
        """Each attachment's scan columns, in order."""
        results: list[dict[str, Any]] = []
        down = False
        for attachment in attachments:
            status, signature = (UNSCANNED, None) if down else self.scan(attachment.content)
            down = down or status == UNSCANNED
            if status == QUARANTINED:
                log.warning("scan.quarantined", signature=signature, sha256=attachment.sha256)
            results.append({"scan_status": status, "scan_signature": signature})
        return results


def _read_reply(sock: socket.socket) -> str:
    """clamd's reply, up to its NUL (the z-prefixed commands end replies with one)."""
    parts: list[bytes] = []
    size = 0
    while size < 4096:
        part = sock.recv(4096)
        if not part:
            break
        parts.append(part)
        size += len(part)
        if part.endswith(b"\0"):
            break
    return b"".join(parts).rstrip(b"\0").decode("utf-8", "replace").strip()
