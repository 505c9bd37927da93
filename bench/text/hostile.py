"""Hostile documents through Kave's conversion, one at a time: the status each ends with,
its wall time, and the peak memory of the conversion child and of the process converting
(issue 32: each ends ``skipped:`` or ``failed`` within 10 s, under 512 MB)::

    .venv/bin/python -m bench.text.hostile                 # each document once
    .venv/bin/python -m bench.text.hostile --rounds 2 --compare pages
    .venv/bin/python -m bench.text.hostile --compare memory --only pdf-bomb-250mib.pdf
    .venv/bin/python -m bench.text.hostile --pages-against /tmp/kave-text-corpus

The documents are made by ``loadkit.documents`` and written to a scratch directory. Each
is then converted by a fresh process of its own (``--one FILE MIME``) that calls
``worker.text.convert.convert`` as a text worker's pool process does (bounds checks,
then a child process under its limits), with the limits of the settings
(``worker.text.tasks.limits``: the defaults, or ``KAVE_TEXT_*`` from the environment).
That process prints what ``getrusage`` says: its own peak RSS (the bounds checks run
in it) and its waited-for children's (the conversion child is its only child). A fresh
process per document, because ``ru_maxrss`` is a high-water mark.

``--compare`` alternates, document by document and round by round, the limits as they
are and the same limits with one of them lifted: ``pages``, the page pre-check
(``Bounds.max_pages`` None: pages counted by the converter after it laid them all out,
as before the pre-check existed); ``memory``, the child's address-space limit (4 GiB
instead), to see what a document would take without it.
Figures are printed, never asserted; the load average is printed with each row.

``--pages-against DIR`` checks the page pre-check on real PDFs instead (the corpus of
``bench.text.corpus``): its page count of each, next to the converter's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadkit import documents

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PDF = "application/pdf"
MIB = 1024 * 1024


def _noise_pdf() -> bytes:
    noise = random.Random(32).randbytes(1024 * 1024)  # noqa: S311 - noise, not a secret
    return b"%PDF-1.7\n" + noise


# name, MIME type the converter is told, maker. The first of each kind is the one the
# test sends (tests/worker/test_attachment_text.py); the others push the same kind harder.
DOCUMENTS: tuple[tuple[str, str, Callable[[], bytes]], ...] = (
    ("zip-bomb.docx", DOCX, documents.zip_bomb_docx),
    ("zip-bomb-1gib.docx", DOCX, lambda: documents.zip_bomb_docx(1024)),
    ("pdf-bomb.pdf", PDF, documents.pdf_bomb),
    ("pdf-bomb-1gib.pdf", PDF, lambda: documents.pdf_bomb(1024)),
    ("pdf-bomb-after-raw.pdf", PDF, documents.pdf_bomb_after_raw_streams),
    ("pdf-bomb-under-ratio.pdf", PDF, documents.pdf_bomb_under_ratio),
    ("pdf-bomb-250mib.pdf", PDF, lambda: documents.pdf_bomb_under_ratio(250)),
    ("pages-5000.pdf", PDF, lambda: documents.many_pages_pdf(5000)),
    ("pages-5000-dense.pdf", PDF, lambda: documents.dense_pages_pdf(5000)),
    ("pages-5000-one-object.pdf", PDF, lambda: documents.repeated_page_pdf(5000)),
    # Under the page cap, so only the wall-time limit ends it.
    ("pages-1999-dense.pdf", PDF, lambda: documents.dense_pages_pdf(1999)),
    ("corrupt.docx", DOCX, lambda: b"PK\x03\x04" + b"\x00" * 600),
    ("corrupt-truncated.pdf", PDF, lambda: documents.truncated(documents.dense_pages_pdf(50))),
    ("corrupt-noise.pdf", PDF, _noise_pdf),
)


def measure(path: Path, mime: str, lifted: str) -> dict[str, Any]:
    """Convert one document in this process, as a text worker does; the figures."""
    from shared.settings import Settings
    from worker.text.convert import convert
    from worker.text.tasks import limits

    configured = limits(Settings(_env_file=None))
    if lifted == "pages":
        bounds = dataclasses.replace(configured.bounds, max_pages=None)
        configured = dataclasses.replace(configured, bounds=bounds)
    elif lifted == "memory":
        configured = dataclasses.replace(configured, memory_bytes=4096 * MIB)
    data = path.read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = convert(data, mime, configured)
    seconds = time.monotonic() - started
    return {
        "status": result.status,
        "error": result.error,
        "seconds": seconds,
        "timeout": configured.timeout_seconds,
        "memory_cap_mib": configured.memory_bytes // MIB,
        # Linux reports ru_maxrss in KiB.
        "child_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "worker_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_before_mib": before / 1024,
    }


def pages_against(corpus: Path) -> None:
    """The pre-check's page count of every PDF under ``corpus`` against kreuzberg's."""
    import kreuzberg

    from worker.text import bounds

    config = kreuzberg.ExtractionConfig(  # type: ignore[call-arg]
        output_format="markdown", use_cache=False, disable_ocr=True
    )
    tally = {"equal": 0, "over": 0, "under": 0, "not opened": 0}
    unlimited = bounds.Bounds(1 << 40, 1 << 40, 1 << 20, 1 << 20, None)
    for path in sorted(corpus.rglob("*.pdf")):
        data = path.read_bytes()
        counted = bounds.count_pdf_pages(data, unlimited)
        try:
            result = kreuzberg.extract_bytes_sync(data, PDF, config=config)
            pages = int(result.metadata.get("page_count") or 0)
        except Exception as exc:  # its verdict on this file: not a page count
            tally["not opened"] += 1
            print(f"{path.name}: pre-check {counted}, kreuzberg {type(exc).__name__}")
            continue
        verdict = "equal" if counted == pages else ("over" if counted > pages else "under")
        tally[verdict] += 1
        if verdict != "equal":
            print(f"{path.name}: pre-check {counted}, kreuzberg {pages}")
    print(tally)


def run_one(path: Path, mime: str, lifted: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.text.hostile", "--one", str(path), mime, lifted]
    done = subprocess.run(command, capture_output=True, check=True)  # noqa: S603 - ourselves
    figures: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--compare", choices=("pages", "memory"), help="alternate it lifted")
    parser.add_argument("--only", action="append", help="document names to run")
    parser.add_argument(
        "--one", nargs=3, metavar=("FILE", "MIME", "LIFTED"), help=argparse.SUPPRESS
    )
    parser.add_argument("--pages-against", type=Path, metavar="DIR")
    args = parser.parse_args()
    if args.pages_against:
        pages_against(args.pages_against)
        return
    if args.one:
        figures = measure(Path(args.one[0]), args.one[1], args.one[2])
        print(json.dumps(figures))
        return
    chosen = [d for d in DOCUMENTS if not args.only or d[0] in args.only]
    modes = ("none", args.compare) if args.compare else ("none",)
    configured: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kave-hostile-") as scratch:
        files = []
        for name, mime, make in chosen:
            path = Path(scratch) / name
            path.write_bytes(make())
            files.append((name, mime, path))
        print(
            f"{'document':<26} {'bytes':>9} {'lifted':>6} {'status':<18} {'wall s':>6}"
            f" {'child MiB':>9} {'worker MiB':>10} {'+MiB':>5} {'load':>5}"
        )
        for _ in range(args.rounds):
            for name, mime, path in files:
                for lifted in modes:
                    row = run_one(path, mime, lifted)
                    if lifted == "none":
                        configured = row
                    print(
                        f"{name:<26} {path.stat().st_size:>9} {lifted:>6}"
                        f" {row['status']!s:<18} {row['seconds']:>6.2f}"
                        f" {row['child_peak_mib']:>9.1f} {row['worker_peak_mib']:>10.1f}"
                        f" {row['worker_peak_mib'] - row['worker_before_mib']:>5.1f}"
                        f" {os.getloadavg()[0]:>5.2f}",
                        flush=True,
                    )
        cap = configured["memory_cap_mib"]
        print(f"limits: timeout {configured['timeout']} s, child address space {cap} MiB")


if __name__ == "__main__":
    main()
