"""Kave's conversion throughput: documents per second per process, by format.

Each document goes through ``worker.text.convert.convert`` exactly as a text worker runs
it (bounds, then a fresh child process under its limits), one after another in this
process: the figure is what one text-worker pool process converts per second. The
corpus comes from ``bench.text.corpus``::

    .venv/bin/python -m bench.text.corpus --out /tmp/kave-text-corpus
    .venv/bin/python -m bench.text.throughput /tmp/kave-text-corpus --per-format 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

from worker.ingest.derive.text_formats import text_format
from worker.text.bounds import Bounds
from worker.text.convert import Limits, convert

FORMATS = (".pdf", ".docx", ".xlsx", ".pptx")
MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--per-format", type=int, default=20, help="documents per format")
    args = parser.parse_args()
    limits = Limits(
        Bounds(50 * MIB, 256 * MIB, 200, 10_000, 2000), 30.0, 512 * MIB, 2000, 2_000_000
    )
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(args.corpus.rglob("*")):
        if path.suffix in FORMATS and len(groups[path.suffix]) < args.per_format:
            groups[path.suffix].append(path)
    print(f"{'format':<6} {'docs':>4} {'docs/s':>7} {'median s':>8} {'max s':>6}  statuses")
    for suffix, paths in sorted(groups.items()):
        times: list[float] = []
        statuses: dict[str, int] = defaultdict(int)
        started = time.perf_counter()
        for path in paths:
            mime = text_format(path.name, "application/octet-stream", None) or "text/plain"
            result = convert(path.read_bytes(), mime, limits)
            times.append(result.seconds)
            statuses[result.status] += 1
        total = time.perf_counter() - started
        print(
            f"{suffix[1:]:<6} {len(paths):>4} {len(paths) / total:>7.2f}"
            f" {statistics.median(times):>8.3f} {max(times):>6.2f}  {dict(statuses)}"
        )


if __name__ == "__main__":
    main()
