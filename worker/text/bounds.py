"""Checks made before a document is opened: its size, how far its compressed parts
would expand (an OOXML/ODF zip's members; a PDF's Flate streams) and a PDF's pages. Pure:
bytes in, the bound it is over (or None) out.

Hand-written because the libraries that open these formats inflate first and count
after: a zip bomb DOCX or a PDF whose one stream inflates to gigabytes must be refused
before the converter sees it. The zip check reads the central directory only (declared
sizes, which may lie: the child's memory limit is the backstop); the PDF check really
inflates each Flate stream, in bounded chunks, counting and discarding the output, and
stops at the budget.

Pages likewise: the converter lays out every page before it says how many there were, at
tens of milliseconds a page of text, so a 5,000-page report would run into the time
limit. The page count is read from the page tree's objects, in the file and in its object
streams (whose inflated text the PDF check keeps, up to ``_KEEP_BYTES``): the larger of
the page objects and the page references in /Kids arrays (less one per intermediate
node), so one page object listed 5,000 times counts 5,000. A tree written to hide its
pages (escaped names, say) gets past it; the child's page count and time limit remain.
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
# Object streams (PDF 1.5) hold the page tree of most PDFs written since: their inflated
# text is kept for the page count, this much in all (a page tree is kilobytes).
_KEEP_BYTES: Final = 16 * 1024 * 1024
_OBJECT_STREAM: Final = re.compile(rb"/Type\s*/ObjStm(?![^\s()<>\[\]{}/%])")
_PAGE: Final = re.compile(rb"/Type\s*/Page(?![^\s()<>\[\]{}/%])")
_PAGES: Final = re.compile(rb"/Type\s*/Pages(?![^\s()<>\[\]{}/%])")
_KIDS: Final = re.compile(rb"/Kids\s*\[([^\]]*)\]")
_COUNT: Final = re.compile(rb"/Count\s+(\d{1,9})")
_DELIMITERS: Final = re.compile(rb"<<|>>")
# A page tree node's dictionary is looked for this far either side of its /Type (a node
# listing 5,000 kids is about 40 KB).
_DICTIONARY_REACH: Final = 256 * 1024
_REFERENCE: Final = re.compile(rb"\d+\s+\d+\s+R(?![^\s()<>\[\]{}/%])")


@dataclass(frozen=True, slots=True)
class Bounds:
    max_bytes: int
    max_expanded_bytes: int
    max_expansion_ratio: int
    max_zip_members: int
    max_pages: int | None  # None: pages are counted by the converter only


def over_bound(data: bytes, bounds: Bounds) -> str | None:
    """The bound ``data`` is over (``size``, ``expansion``, ``pages``), or None."""
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
    kept: list[bytes] = []
    if _pdf_expands(data, bounds, kept):
        return "expansion"
    if bounds.max_pages is not None and pdf_pages(data, kept) > bounds.max_pages:
        return "pages"
    return None


def count_pdf_pages(data: bytes, bounds: Bounds) -> int:
    """The pre-check's page count of a PDF within ``bounds`` (its object streams read as
    far as the expansion bounds allow), as ``over_bound`` sees it."""
    kept: list[bytes] = []
    _pdf_expands(data, bounds, kept)
    return pdf_pages(data, kept)


def pdf_pages(data: bytes, object_streams: list[bytes]) -> int:
    """How many pages the page tree has, as far as its objects tell (see the module)."""
    leaves = nodes = references = declared = 0
    for text in (data, *object_streams):
        leaves += len(_PAGE.findall(text))
        for match in _PAGES.finditer(text):
            node = _dictionary_at(text, match.start())
            nodes += 1
            references += sum(len(_REFERENCE.findall(kids)) for kids in _KIDS.findall(node))
            declared = max([declared, *(int(n) for n in _COUNT.findall(node))])
    # Every node but the root is some node's /Kids entry; the other entries are pages.
    return max(leaves, declared, references - max(nodes - 1, 0))


def _dictionary_at(text: bytes, at: int) -> bytes:
    """The dictionary (``<<`` to its ``>>``) around ``at``, looked for within
    ``_DICTIONARY_REACH`` either side; empty when it is not whole there."""
    depth, start = 0, -1
    for token in reversed(list(_DELIMITERS.finditer(text, max(0, at - _DICTIONARY_REACH), at))):
        if token.group() == b">>":
            depth += 1
        elif depth == 0:
            start = token.start()
            break
        else:
            depth -= 1
    if start < 0:
        return b""
    depth = 0
    for token in _DELIMITERS.finditer(text, at, at + _DICTIONARY_REACH):
        if token.group() == b"<<":
            depth += 1
        elif depth == 0:
            return text[start : token.end()]
        else:
            depth -= 1
    return b""


def _pdf_expands(data: bytes, bounds: Bounds, kept: list[bytes]) -> bool:
    """Inflate every stream that inflates (Flate or not: an undeclared filter is no
    defence), at most ``max_expanded_bytes`` in all; the object streams' text into
    ``kept``."""
    budget = bounds.max_expanded_bytes
    keeping = _KEEP_BYTES
    # Streams that never end would each read to the end of the file: the input read in
    # all is capped at twice the file, past which the child's own limits are the guard.
    reading = 2 * len(data)
    view = memoryview(data)  # slices of it are not copies
    for match in _STREAM.finditer(data):
        if reading <= 0:
            break
        start = match.end()
        keep = keeping if _is_object_stream(data, match.start()) else 0
        end = min(len(data), start + reading)
        over, produced, consumed, text = _inflate(view[start:end], budget, bounds, keep)
        if over:
            return True
        reading -= consumed
        budget -= produced
        if text:
            kept.append(text)
            keeping -= len(text)
    return False


def _inflate(
    data: memoryview, budget: int, bounds: Bounds, keep: int
) -> tuple[bool, int, int, bytes]:
    """Inflate the stream at the start of ``data``: (over a bound, bytes produced, bytes
    read, its first ``keep`` inflated bytes)."""
    inflater = zlib.decompressobj()
    produced = consumed = 0
    text = bytearray()
    try:
        while not inflater.eof and consumed < len(data):
            chunk = data[consumed : consumed + _CHUNK]
            consumed += len(chunk)
            out = inflater.decompress(chunk, _CHUNK)
            while True:
                produced += len(out)
                if len(text) < keep:
                    text += out[: keep - len(text)]
                if not (inflater.unconsumed_tail and produced <= budget and not inflater.eof):
                    break
                out = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
                if not out:
                    break  # no progress (a stalled or damaged stream): stop here
            if produced > budget:
                return True, produced, consumed, b""
            if produced > _RATIO_FLOOR_BYTES and produced / consumed > bounds.max_expansion_ratio:
                return True, produced, consumed, b""  # a bomb shows itself in its first MBs
    except zlib.error:
        # Not a zlib stream (raw, or another filter): refused at its first bytes, it read
        # nothing worth counting against the input cap. A damaged one counts what it read.
        return False, produced, consumed if produced else 0, bytes(text)
    used = consumed - len(inflater.unused_data)
    big = produced > _RATIO_FLOOR_BYTES
    over = big and produced / max(used, 1) > bounds.max_expansion_ratio
    return over, produced, used, bytes(text)


def _is_object_stream(data: bytes, at: int) -> bool:
    """Whether the stream keyword at ``at`` ends an object stream's dictionary (read back
    to its ``obj``)."""
    head = data.rfind(b"obj", max(0, at - 4096), at)
    return _OBJECT_STREAM.search(data, max(head, at - 4096, 0), at) is not None
