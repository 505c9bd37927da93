"""CPU seconds per MB of each adversarial email family on the worker's parse and derive
path (:mod:`loadkit.complexity`), and how its time grows.

Each family is built at 1 MiB (256 KiB with ``--quick``) and timed in CPU seconds (best
of 3, so other processes on the machine do not count), and its peak Python allocation
taken with tracemalloc (not with ``--quick``); then at 16 KiB and 128 KiB, whose ratio
is about 8 for linear growth and 64 for quadratic. ``tests/worker/test_complexity.py``
fails on super-linear growth of the same families; RELIABILITY.md's "Linear time"
quotes these figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loadkit.complexity import FAMILIES, MIB, cpu_seconds, inbound_event, peak_bytes
from worker.ingest import parsing

RATIO_SIZE = 16 * 1024  # n of the n / 8n ratio


def run(*, quick: bool, progress: Callable[[str], None] = print) -> dict[str, Any]:
    size = MIB // 4 if quick else MIB
    rows: list[dict[str, Any]] = []
    for name, build in FAMILIES.items():
        event = inbound_event(build(size))
        row: dict[str, Any] = {"family": name, "bytes": len(event["msg"]["raw_msg"].encode())}
        try:
            row["cpu_seconds"] = cpu_seconds(event)
        except parsing.LimitExceededError as exc:
            row["refused"] = f"over_limit:{exc.limit}"
            rows.append(row)
            continue
        small = cpu_seconds(inbound_event(build(RATIO_SIZE)), repeats=5)
        large = cpu_seconds(inbound_event(build(8 * RATIO_SIZE)), repeats=3)
        row["ratio"] = large / max(small, 1e-4)
        row["peak_bytes"] = None if quick else peak_bytes(event)
        rows.append(row)
        progress(f"  complexity: {name}: {row['cpu_seconds']:.3f} s")
    return {"size": size, "ratio_size": RATIO_SIZE, "rows": rows}


def section(data: dict[str, Any]) -> tuple[list[str], list[tuple[str, bool]]]:
    lines = [
        f"### Adversarial email families: {data['size'] // 1024} KiB each through the parse "
        f"and derive path (CPU s, best of 3); growth from {data['ratio_size'] // 1024} KiB "
        "to 8x that",
        "",
        "| family | bytes | CPU s | s/MB | 8n / n | peak MB |",
        "|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        if "refused" in row:
            lines.append(f"| {row['family']} | {row['bytes']} | refused: {row['refused']} | | | |")
            continue
        peak = "-" if row["peak_bytes"] is None else f"{row['peak_bytes'] / 1e6:.1f}"
        lines.append(
            f"| {row['family']} | {row['bytes']} | {row['cpu_seconds']:.3f} | "
            f"{row['cpu_seconds'] / (row['bytes'] / 1e6):.3f} | {row['ratio']:.1f} | {peak} |"
        )
    # No target here: tests/worker/test_complexity.py holds the bound on the growth, with
    # sizes chosen per family and a floor for the noise.
    return lines, []
