"""How fast and how cheaply the worker refuses hostile emails, measured on the parser
itself: no services needed.

For each input (:mod:`loadkit.hostile_mail`) the time ``parse_inbound`` takes to refuse
it with the default limits (best of 3 runs), the peak memory it allocates doing so
(tracemalloc, the UTF-8 copy of ``raw_msg`` included), and, for comparison, the same
without limits (what a worker spent before the caps; left out with ``--quick``). A large
ordinary email shows what the pre-scan costs mail that passes. RELIABILITY.md's "Worker:
hostile email" quotes these figures; ``tests/worker/test_hostile_input.py`` checks the
refusals end to end.
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
RUNS = 3


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


# (name, builder, the cap that refuses it or None, compared without limits)
INPUTS: list[tuple[str, Callable[[], str], str | None, bool]] = [
    ("parts bomb, 33,000 parts", lambda: hostile_mail.parts_bomb(33_000), "mime_parts", True),
    (
        "parts bomb, 3,000,000 parts (116 MB)",
        lambda: hostile_mail.parts_bomb(3_000_000),
        "mime_parts",
        False,
    ),
    ("deep nesting, 5,000 levels", lambda: hostile_mail.deep_nesting(5_000), "nesting_depth", True),
    (
        "huge headers, 2 MiB of 64-byte headers",
        lambda: hostile_mail.huge_headers(2 << 20),
        "header_bytes",
        True,
    ),
    ("many attachments, 998", lambda: hostile_mail.many_attachments(998), "attachments", True),
    ("ordinary email, 25 MB, 4 attachments", lambda: large_ordinary_email(25), None, False),
]


def outcome(call: Callable[[], Any]) -> str:
    try:
        email = call()
    except parsing.LimitExceededError as exc:
        return f"over_limit:{exc.limit} ({exc})"
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


def measure(raw: str, *, compare: bool) -> dict[str, Any]:
    event = hostile_mail.inbound_event(raw)

    def limited() -> Any:
        return parsing.parse_inbound(event)

    def unlimited() -> Any:
        return parsing.parse_inbound(event, UNLIMITED)

    raw_bytes = raw.encode()
    limits = parsing.DEFAULT_LIMITS
    figures: dict[str, Any] = {
        "bytes": len(raw_bytes),
        "prescan_ms": best_time(
            lambda: mime_shape.scan(raw_bytes, limits.max_mime_parts, limits.max_nesting_depth),
            RUNS,
        )
        * 1000,
        "outcome": outcome(limited),
        "ms": best_time(limited, RUNS) * 1000,
        "peak_bytes": peak_memory(limited),
    }
    if compare:
        figures["unlimited"] = {
            "outcome": outcome(unlimited),
            "ms": best_time(unlimited, 1) * 1000,
            "peak_bytes": peak_memory(unlimited),
        }
    return figures


def run(*, quick: bool, progress: Callable[[str], None] = print) -> dict[str, Any]:
    limits = parsing.DEFAULT_LIMITS
    rows = []
    for name, build, cap, compare in INPUTS:
        rows.append({"name": name, "cap": cap, **measure(build(), compare=compare and not quick)})
        progress(f"  mail: {name}: {rows[-1]['outcome'][:60]}")
    return {
        "limits": {
            "max_mime_parts": limits.max_mime_parts,
            "max_nesting_depth": limits.max_nesting_depth,
            "max_header_bytes": limits.max_header_bytes,
            "max_attachments": limits.max_attachments,
        },
        "rows": rows,
    }


def section(data: dict[str, Any]) -> tuple[list[str], list[tuple[str, bool]]]:
    lim = data["limits"]
    lines = [
        "### Hostile email: refused by the parser (best of 3; memory: peak Python allocation)",
        "",
        f"Default limits: {lim['max_mime_parts']} MIME parts, nesting "
        f"{lim['max_nesting_depth']}, {lim['max_header_bytes']} header bytes, "
        f"{lim['max_attachments']} attachments.",
        "",
        "| input | MB | pre-scan ms | with limits | ms | peak MB | without limits: ms | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    checks: list[tuple[str, bool]] = []
    for row in data["rows"]:
        free = row.get("unlimited")
        lines.append(
            f"| {row['name']} | {row['bytes'] / 1e6:.2f} | {row['prescan_ms']:.1f} | "
            f"{row['outcome']} | {row['ms']:.1f} | {row['peak_bytes'] / 1e6:.1f} | "
            + (f"{free['ms']:.1f} | {free['peak_bytes'] / 1e6:.1f} |" if free else " | |")
        )
        expected = f"over_limit:{row['cap']}" if row["cap"] else "parsed"
        got = row["outcome"].split(" (")[0]
        checks.append(
            (f"hostile email, {row['name']}: {expected} (got {got})", got.startswith(expected))
        )
    return lines, checks
