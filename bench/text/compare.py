"""Compare the candidate text extractors on the corpus (docs/text-extraction.md).

Runs in a scratch virtualenv that has both candidates (they are not both in Kave's pins)::

    python3 -m venv /tmp/textenv
    /tmp/textenv/bin/pip install 'markitdown[pdf,docx,xlsx,pptx]' kreuzberg
    /tmp/textenv/bin/python -m bench.text.corpus --out /tmp/kave-text-corpus
    /tmp/textenv/bin/python -m bench.text.compare /tmp/kave-text-corpus

Each candidate converts every file in a child process of its own (started once, reused),
file by file, with a per-file timeout that kills and restarts it. Printed per candidate
and format: files, non-empty outputs, files with a Markdown table, seconds per file
(median and total), and the failures. A file "has a text layer" when at least one
candidate got text out of it: the non-empty rate is over those.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$", re.MULTILINE)
FORMATS = (".pdf", ".docx", ".xlsx", ".pptx")


def _markitdown() -> Any:
    from markitdown import MarkItDown

    converter = MarkItDown(enable_plugins=False)
    return lambda path: converter.convert(path).markdown


def _kreuzberg() -> Any:
    import kreuzberg

    # disable_ocr (absent from the stubs, present at run time): no OCR engine, no model,
    # nothing downloaded; an image-only page gives no text.
    config = kreuzberg.ExtractionConfig(  # type: ignore[call-arg]
        output_format="markdown", use_cache=False, disable_ocr=True
    )
    return lambda path: kreuzberg.extract_file_sync(path, config=config).content


CANDIDATES = {"markitdown": _markitdown, "kreuzberg": _kreuzberg}


def _serve(name: str, jobs: Any, results: Any) -> None:
    convert = CANDIDATES[name]()
    results.put(("ready", 0.0, ""))
    while True:
        path = jobs.get()
        started = time.perf_counter()
        try:
            text = convert(path) or ""
            results.put(("ok", time.perf_counter() - started, text))
        except Exception as exc:  # a candidate's failure on one file is a figure
            results.put(("error", time.perf_counter() - started, type(exc).__name__))


class Runner:
    """One candidate in a child process; ``convert`` kills and restarts it on a timeout."""

    def __init__(self, name: str, timeout: float) -> None:
        self.name, self.timeout = name, timeout
        self.startup = self._start()

    def _start(self) -> float:
        ctx = mp.get_context("spawn")
        self.jobs, self.results = ctx.Queue(), ctx.Queue()
        started = time.perf_counter()
        self.process = ctx.Process(target=_serve, args=(self.name, self.jobs, self.results))
        self.process.start()
        self.results.get(timeout=120)
        return time.perf_counter() - started

    def convert(self, path: Path) -> tuple[str, float, str]:
        self.jobs.put(str(path))
        try:
            result: tuple[str, float, str] = self.results.get(timeout=self.timeout)
            return result
        except Exception:
            self.process.kill()
            self.process.join()
            self._start()
            return ("timeout", self.timeout, "")

    def close(self) -> None:
        self.process.kill()
        self.process.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--only", choices=sorted(CANDIDATES), action="append")
    args = parser.parse_args()
    files = sorted(p for p in args.corpus.rglob("*") if p.suffix in FORMATS)
    outcomes: dict[str, dict[Path, tuple[str, float, str]]] = {}
    for name in args.only or sorted(CANDIDATES):
        runner = Runner(name, args.timeout)
        print(f"{name}: started in {runner.startup:.2f} s")
        outcomes[name] = {path: runner.convert(path) for path in files}
        runner.close()
    with_text = {
        p for by in outcomes.values() for p, (s, _, t) in by.items() if s == "ok" and t.strip()
    }
    print(f"\n{len(files)} files, {len(with_text)} with a text layer (some candidate got text)\n")
    header = f"{'candidate':<11} {'format':<6} {'files':>5} {'text layer':>10} {'non-empty':>9}"
    print(header + f" {'rate':>6} {'md table':>8} {'median s':>8} {'total s':>7}  failures")
    for name, by in outcomes.items():
        groups: dict[str, list[Path]] = defaultdict(list)
        for path in files:
            groups[path.suffix].append(path)
        for suffix, paths in sorted(groups.items()):
            layered = [p for p in paths if p in with_text]
            nonempty = [p for p in layered if by[p][0] == "ok" and by[p][2].strip()]
            tables = [p for p in paths if by[p][0] == "ok" and TABLE_RULE.search(by[p][2])]
            times = [by[p][1] for p in paths]
            failures: dict[str, int] = defaultdict(int)
            for p in paths:
                if by[p][0] != "ok":
                    failures[by[p][0] if by[p][0] == "timeout" else by[p][2]] += 1
            rate = 100.0 * len(nonempty) / len(layered) if layered else 0.0
            print(
                f"{name:<11} {suffix[1:]:<6} {len(paths):>5} {len(layered):>10} {len(nonempty):>9}"
                f" {rate:>5.1f}% {len(tables):>8} {statistics.median(times):>8.3f}"
                f" {sum(times):>7.1f}  {dict(failures) or ''}"
            )
        layered_all = [p for p in files if p in with_text]
        ok_all = [p for p in layered_all if by[p][0] == "ok" and by[p][2].strip()]
        print(
            f"{name:<11} all    {len(files):>5} {len(layered_all):>10} {len(ok_all):>9}"
            f" {100.0 * len(ok_all) / len(layered_all):>5.1f}%"
        )


if __name__ == "__main__":
    main()
