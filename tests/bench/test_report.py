"""The worker section of ``make bench``'s table (bench/report.py), from given rows: the
CPU factor against the no-op task is the figure checked (issue 35), at 100 KB."""

from __future__ import annotations

from typing import Any

from bench.report import worker_section


def _row(size: str, cpu_ms: float, noop_cpu_ms: float) -> dict[str, Any]:
    return {
        "size": size, "store": "local", "processes": 1, "emails": 100,
        "rate": 50.0, "noop_rate": 150.0, "ratio": 1 / 3,
        "cpu_ms": cpu_ms, "noop_cpu_ms": noop_cpu_ms, "s3_cpu_ms": None,
    }  # fmt: skip


def test_the_cpu_factor_at_100kb_is_the_check() -> None:
    lines, checks = worker_section(
        {"rows": [_row("8KB", 9.0, 2.0), _row("100KB", 9.0, 4.0), _row("1MB", 30.0, 25.0)]}
    )

    assert checks == [
        ("worker 100KB local, 1 process(es): CPU per email <= 2x the no-op's (got 2.25x)", False)
    ]
    row = "| 100KB | local | 1 | 100 | 50.0 | 150.0 | **33.3%** | 9.00 | 4.00 | **2.25x** |  |"
    assert row in lines


def test_a_row_within_the_factor_passes() -> None:
    _, checks = worker_section({"rows": [_row("100KB", 7.9, 4.0)]})

    assert [ok for _, ok in checks] == [True]
