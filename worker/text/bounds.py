"""Checks made before a document is opened: its size, and how far its compressed parts
would expand (an OOXML/ODF zip's members; a PDF's Flate streams). Pure: bytes in, the
bound it is over (or None) out.

Hand-written because the libraries that open these formats inflate first and count
after: a zip bomb DOCX or a PDF whose one stream inflates to gigabytes must be refused
before the converter sees it. The zip check reads the central directory only (declared
sizes, which may lie: the child's memory limit is the backstop); the PDF check really
inflates each Flate stream, in bounded chunks, counting and discarding the output, and
stops at the budget.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import Final

_ZIP_MAGIC: Final = b"PK\x03\x04"
_PDF_MAGIC: Final = b"%PDF"
_STREAM: Final = re.compile(rb"stream\r?\n")
_CHUNK: Final = 64 * 1024
# Streams smaller than this inflate to whatever they like within the total budget: a
# high ratio on a few kilobytes (a page of one repeated glyph) harms nobody.
_RATIO_FLOOR_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Bounds:
    max_bytes: int
    max_expanded_bytes: int
    max_expansion_ratio: int
    max_zip_members: int


def over_bound(data: bytes, bounds: Bounds) -> str | None:
    """The bound ``data`` is over (``size``, ``expansion``), or None."""
    if len(data) > bounds.max_bytes:
        return "size"
    if data.startswith(_ZIP_MAGIC):
        return _zip_over(data, bounds)
    if data[:1024].lstrip().startswith(_PDF_MAGIC):
        return _pdf_over(data, bounds)
    return None


def _zip_over(data: bytes, bounds: Bounds) -> str | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return None  # not a readable zip: the converter says what it is (failed)
    if len(members) > bounds.max_zip_members:
        return "expansion"
    total = 0
    for member in members:
        total += member.file_size
        compressed = max(member.compress_size, 1)
        big = member.file_size > _RATIO_FLOOR_BYTES
        if big and member.file_size / compressed > bounds.max_expansion_ratio:
            return "expansion"
    return "expansion" if total > bounds.max_expanded_bytes else None


def _pdf_over(data: bytes, bounds: Bounds) -> str | None:
    """Inflate every stream that inflates (Flate or not: an undeclared filter is no
    defence), at most ``max_expanded_bytes`` in all."""
    budget = bounds.max_expanded_bytes
    # Streams that never end would each read to the end of the file: the input read in
    # all is capped at twice the file, past which the child's own limits are the guard.
    reading = 2 * len(data)
    for match in _STREAM.finditer(data):
        start = match.end()
        inflater = zlib.decompressobj()
        produced = consumed = 0
        try:
            while not inflater.eof and start + consumed < len(data):
                chunk = data[start + consumed : start + consumed + _CHUNK]
                consumed += len(chunk)
                reading -= len(chunk)
                if reading < 0:
                    return None
                out = inflater.decompress(chunk, _CHUNK)
                produced += len(out)
                while inflater.unconsumed_tail and produced <= budget and not inflater.eof:
                    out = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
                    if not out:
                        break  # no progress (a stalled or damaged stream): stop here
                    produced += len(out)
                if produced > budget:
                    return "expansion"
                if (
                    produced > _RATIO_FLOOR_BYTES
                    and produced / consumed > bounds.max_expansion_ratio
                ):
                    return "expansion"  # a bomb shows itself in its first megabytes
        except zlib.error:
            pass  # not a zlib stream (or a damaged one): nothing to count
        used = consumed - len(inflater.unused_data)
        big = produced > _RATIO_FLOOR_BYTES
        if big and produced / max(used, 1) > bounds.max_expansion_ratio:
            return "expansion"
        budget -= produced
    return None
