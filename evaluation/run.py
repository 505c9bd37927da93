"""``make eval``: score every corpus and print accuracy per field and per corpus.

    python -m evaluation.run [--corpus NAME ...] [--corpora-dir DIR ...] [--json] [--misses]

Corpora are the folders under ``evaluation/corpora`` (plus any ``--corpora-dir``, for
corpora kept outside the repository). ``--json`` prints the rows for tooling, ``--misses``
lists each wrong case after the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from evaluation.corpus import CORPORA_DIR, corpus_dirs, load_corpus
from evaluation.score import Tally, score_corpus

_ALL = "ALL"


def _total(tallies: list[Tally]) -> list[Tally]:
    """One ALL row per metric, summed over the corpora (n/a if any corpus had it n/a)."""
    totals: dict[str, Tally] = {}
    for tally in tallies:
        total = totals.setdefault(tally.metric, Tally(_ALL, tally.metric))
        total.cases += tally.cases
        if total.right is not None and tally.right is not None:
            total.right += tally.right
        else:
            total.right = None
    return [totals[key] for key in sorted(totals)]


def _cell(tally: Tally) -> tuple[str, str]:
    if tally.right is None:
        return "n/a", "n/a"
    percent = tally.percent
    return str(tally.right), "-" if percent is None else f"{percent:.1f}"


def print_table(rows: list[Tally], out: TextIO) -> None:
    """The table: corpus, metric, cases, right, %."""
    header = ("corpus", "metric", "cases", "right", "%")
    lines = [header] + [(t.corpus, t.metric, str(t.cases), *_cell(t)) for t in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for index, line in enumerate(lines):
        cells = [
            cell.ljust(width) if column < 2 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.write("  ".join(cells).rstrip() + "\n")
        if index == 0:
            out.write("  ".join("-" * width for width in widths) + "\n")


def evaluate(names: Sequence[str], roots: Sequence[Path]) -> list[Tally]:
    """Score the named corpora (all when none is named) under the roots."""
    dirs = corpus_dirs(list(roots))
    unknown = set(names) - {d.name for d in dirs}
    if unknown:
        raise SystemExit(f"no such corpus: {', '.join(sorted(unknown))}")
    rows: list[Tally] = []
    for path in dirs:
        if not names or path.name in names:
            rows.extend(score_corpus(load_corpus(path)))
    return rows


def _as_json(rows: list[Tally], seconds: float) -> dict[str, Any]:
    return {
        "date": date.today().isoformat(),
        "seconds": round(seconds, 2),
        "rows": [
            {
                "corpus": t.corpus,
                "metric": t.metric,
                "cases": t.cases,
                "right": t.right,
                "percent": None if t.percent is None else round(t.percent, 1),
                "misses": t.misses if t.corpus != _ALL else [],
            }
            for t in rows
        ],
    }


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.run", description=__doc__)
    parser.add_argument("--corpus", action="append", default=[], help="only this corpus")
    parser.add_argument(
        "--corpora-dir", action="append", type=Path, default=[], help="more corpus folders"
    )
    parser.add_argument("--json", action="store_true", help="rows as JSON, misses included")
    parser.add_argument("--misses", action="store_true", help="list wrong cases after the table")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows = evaluate(args.corpus, [CORPORA_DIR, *args.corpora_dir])
    if len({t.corpus for t in rows}) > 1:
        rows = rows + _total(rows)
    seconds = time.monotonic() - started
    if args.json:
        json.dump(_as_json(rows, seconds), out, indent=2, ensure_ascii=False, default=str)
        out.write("\n")
        return 0
    out.write(f"Kave derived-field evaluation, {date.today().isoformat()} ({seconds:.1f} s)\n\n")
    print_table(rows, out)
    if args.misses:
        for tally in rows:
            for miss in tally.misses:
                out.write(f"\n[{tally.corpus}] {tally.metric}: {miss['file']}\n")
                out.write(f"  expected: {miss['expected']!r}\n  got:      {miss['got']!r}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
