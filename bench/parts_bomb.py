"""How fast and how cheaply the worker refuses hostile emails (RELIABILITY.md, "Hostile
input"), measured on the parser itself: no services needed.

For each input it prints the time ``parse_inbound`` takes to refuse it with the default
limits (best of several runs), the peak memory it allocates doing so (tracemalloc), and
for comparison the same without limits (what a worker spent before the caps). A large
ordinary email shows what the pre-scan costs mail that passes.

    .venv/bin/python -m bench.parts_bomb
"""

from __future__ import annotations

import base64
import contextlib
import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from loadkit import hostile_mail
from worker.ingest import parsing
from worker.ingest.parsing import mime_shape

UNLIMITED = parsing.EmailLimits(
    max_mime_parts=10**9, max_nesting_depth=10**6, max_header_bytes=10**12, max_attachments=10**9
)


def large_ordinary_email(megabytes: int) -> str:
    """A text body and four attachments of random-looking base64, ``megabytes`` in all."""
    chunk = base64.encodebytes(bytes(range(256)) * (megabytes * 1024 * 1024 // 4 // 256 * 3 // 4))
    parts = ["--L\r\nContent-Type: text/plain\r\n\r\nfour files attached\r\n"]
    for i in range(4):
        parts.append(
            "--L\r\nContent-Type: application/pdf\r\n"
            f'Content-Disposition: attachment; filename="file{i}.pdf"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n" + chunk.decode().replace("\n", "\r\n")
        )
    return (
        "From: a@example.org\r\nTo: b@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="L"\r\n\r\n' + "".join(parts) + "--L--\r\n"
    )


def outcome(call: Callable[[], Any]) -> str:
    try:
        email = call()
    except parsing.LimitExceededError as exc:
        return f"refused: over_limit:{exc.limit} ({exc})"
    except parsing.PermanentEventError as exc:
        return f"permanent: {exc}"
    return f"parsed: {len(email.attachments)} attachments"


def best_time(call: Callable[[], Any], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        with contextlib.suppress(parsing.PermanentEventError):
            call()
        best = min(best, time.perf_counter() - started)
    return best


def peak_memory(call: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        outcome(call)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(name: str, raw: str, *, compare: bool, runs: int = 3) -> None:
    event = hostile_mail.inbound_event(raw)

    def limited() -> Any:
        return parsing.parse_inbound(event)

    def unlimited() -> Any:
        return parsing.parse_inbound(event, UNLIMITED)

    raw_bytes = raw.encode()
    limits = parsing.DEFAULT_LIMITS
    scan_seconds = best_time(
        lambda: mime_shape.scan(raw_bytes, limits.max_mime_parts, limits.max_nesting_depth), runs
    )
    print(f"\n{name}: {len(raw_bytes) / 1e6:.2f} MB (pre-scan {scan_seconds * 1000:.1f} ms)")
    print(f"  with limits:    {outcome(limited)}")
    print(
        f"                  {best_time(limited, runs) * 1000:8.1f} ms, "
        f"peak {peak_memory(limited) / 1e6:6.1f} MB allocated"
    )
    if compare:
        print(f"  without limits: {outcome(unlimited)}")
        print(
            f"                  {best_time(unlimited, 1) * 1000:8.1f} ms, "
            f"peak {peak_memory(unlimited) / 1e6:6.1f} MB allocated"
        )


def main() -> None:
    limits = parsing.DEFAULT_LIMITS
    print(
        f"default limits: {limits.max_mime_parts} MIME parts, nesting {limits.max_nesting_depth}, "
        f"{limits.max_header_bytes} header bytes, {limits.max_attachments} attachments"
    )
    measure("parts bomb, 33,000 parts", hostile_mail.parts_bomb(33_000), compare=True)
    measure(
        "parts bomb, 3,000,000 parts (100 MB)", hostile_mail.parts_bomb(3_000_000), compare=False
    )
    measure("deep nesting, 5,000 levels", hostile_mail.deep_nesting(5_000), compare=True)
    measure(
        "huge headers, 2 MiB of 64-byte headers", hostile_mail.huge_headers(2 << 20), compare=True
    )
    measure("many attachments, 999 parts", hostile_mail.many_attachments(998), compare=True)
    measure("ordinary email, 25 MB, 4 attachments", large_ordinary_email(25), compare=False)


if __name__ == "__main__":
    main()
