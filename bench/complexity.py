"""Seconds per MB of each adversarial email family on the worker's parse and derive path.

Every family is an email whose cost a quadratic (or worse) step would blow up: runs of
newlines, attribution-like "On a a a ..." lines, long lines, deep ``>`` quoting, HTML
nesting, sender-declared hostile charsets in body parts and headers, many encoded words.
Each is built at a size, then run through what the ingest task runs on it
(:func:`run_path`: ``parsing.parse_inbound``, then ``derive.email_columns`` and
``derive.attachment_columns``), timed in CPU seconds (best of a few runs, so other
processes on the machine do not count). The table gives seconds per MB at ``--size`` and
the ratio of the times at 8x and 1x a smaller size (about 8 for linear growth, 64 for
quadratic). ``tests/worker/test_complexity.py`` asserts the ratios on the same families.

    .venv/bin/python -m bench.complexity [--size BYTES] [--family NAME ...]
"""

from __future__ import annotations

import argparse

from loadkit.complexity import FAMILIES, MIB, cpu_seconds, inbound_event, peak_bytes
from worker.ingest import parsing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=MIB, help="bytes per family (1 MiB)")
    parser.add_argument("--ratio-size", type=int, default=16 * 1024, help="n of the n/8n ratio")
    parser.add_argument("--family", action="append", help="only these families")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc run")
    args = parser.parse_args()
    names = args.family or list(FAMILIES)
    print(f"{'family':<22} {'bytes':>9} {'cpu s':>7} {'s/MB':>7} {'8n/n':>6} {'peak MB':>8}")
    for name in names:
        build = FAMILIES[name]
        event = inbound_event(build(args.size))
        size = len(event["msg"]["raw_msg"].encode())
        try:
            seconds = cpu_seconds(event)
        except parsing.LimitExceededError as exc:
            print(f"{name:<22} {size:>9} refused: over_limit:{exc.limit}", flush=True)
            continue
        small = cpu_seconds(inbound_event(build(args.ratio_size)), repeats=5)
        large = cpu_seconds(inbound_event(build(8 * args.ratio_size)), repeats=3)
        ratio = large / max(small, 1e-4)
        peak = "-" if args.no_memory else f"{peak_bytes(event) / 1e6:.1f}"
        print(
            f"{name:<22} {size:>9} {seconds:>7.3f} {seconds / (size / 1e6):>7.3f}"
            f" {ratio:>6.1f} {peak:>8}",
            flush=True,
        )


if __name__ == "__main__":
    main()
