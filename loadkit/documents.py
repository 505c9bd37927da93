"""Documents made by hand for the attachment-text tests and bench: a text PDF of many
pages, a PDF whose one stream inflates to hundreds of megabytes, a zip-bomb DOCX, a
TNEF ``winmail.dat`` carrying given files. Written here, not taken from anywhere, so
their shape is exactly the hostile one each test needs."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib


def pdf(pages: list[bytes], *, contents: list[bytes] | None = None) -> bytes:
    """A PDF with one page per content stream of ``pages`` (raw operators, uncompressed),
    or, with ``contents``, pages that all share ``contents[0]`` (already encoded, its
    dictionary's extra keys in ``contents[1]``)."""
    objects: list[bytes] = []
    shared = contents is not None
    count = len(pages)
    first_page = 4  # 1 catalog, 2 pages, 3 font
    content_base = first_page + count
    kids = b" ".join(b"%d 0 R" % (first_page + i) for i in range(count))
    objects.append(b"<</Type/Catalog/Pages 2 0 R>>")
    objects.append(b"<</Type/Pages/Kids[" + kids + b"]/Count %d>>" % count)
    objects.append(b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>")
    for i in range(count):
        content = content_base if shared else content_base + i
        objects.append(
            b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Resources<</Font<</F1 3 0 R>>>>"
            b"/Contents %d 0 R>>" % content
        )
    streams = [contents[0]] if contents is not None else pages
    extra = contents[1] if contents is not None else b""
    for stream in streams:
        objects.append(b"<</Length %d%s>>stream\n" % (len(stream), extra) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def text_page(line: str) -> bytes:
    escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"BT /F1 12 Tf 72 720 Td (" + escaped.encode("latin-1") + b") Tj ET"


def many_pages_pdf(pages: int) -> bytes:
    """``pages`` pages sharing one small content stream: a few hundred KB for 5,000."""
    return pdf([b""] * pages, contents=[text_page("A page among many."), b""])


def dense_pages_pdf(pages: int, lines: int = 50) -> bytes:
    """``pages`` pages, each its own content stream of ``lines`` lines of distinct text: a
    long report, the costly kind to convert (the converter lays out every line)."""
    return pdf([_dense_page(page, lines) for page in range(pages)])


def repeated_page_pdf(pages: int, lines: int = 50) -> bytes:
    """One dense page object listed ``pages`` times in the page tree's /Kids: a
    ``pages``-page document with a single page object (a page count from the page objects
    alone says 1)."""
    single = pdf([_dense_page(0, lines)])
    kids = b"/Kids[" + b" ".join([b"4 0 R"] * pages) + b"]/Count %d" % pages
    return _rewritten(single, b"/Kids[4 0 R]/Count 1", kids)


def _dense_page(page: int, lines: int) -> bytes:
    shown = b" ".join(
        b"(Page %d, line %d: the quarterly figures of region %d, as agreed) '"
        % (page + 1, line + 1, (page * lines + line) % 97)
        for line in range(lines)
    )
    return b"BT /F1 10 Tf 72 760 Td 12 TL " + shown + b" ET"


def _rewritten(document: bytes, old: bytes, new: bytes) -> bytes:
    """``document`` with ``old`` replaced by ``new`` in one object, the cross-reference
    offsets of the objects after it shifted by the difference."""
    at = document.index(old)
    shift = len(new) - len(old)
    head, tail = document[:at], document[at + len(old) :]
    xref = tail.index(b"xref\n")
    entries = tail[xref:].split(b"\n")
    for index, entry in enumerate(entries):
        if entry.endswith(b" 00000 n ") and int(entry[:10]) > at:
            entries[index] = b"%010d 00000 n " % (int(entry[:10]) + shift)
    start = int(entries[-3])  # startxref's value: the last lines are it and %%EOF
    entries[-3] = b"%d" % (start + shift)
    return head + new + tail[:xref] + b"\n".join(entries)


def pdf_bomb(inflated_mib: int = 64) -> bytes:
    """One page whose Flate content stream inflates to ``inflated_mib`` MiB of spaces."""
    compressor = zlib.compressobj(6)
    block = b" " * (1024 * 1024)
    parts = [compressor.compress(text_page("Bomb")) + compressor.compress(block)]
    parts += [compressor.compress(block) for _ in range(inflated_mib - 1)]
    parts.append(compressor.flush())
    return pdf([b""], contents=[b"".join(parts), b"/Filter/FlateDecode"])


_CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" ContentType="application/'
    b'vnd.openxmlformats-package.relationships+xml"/>'
    b'<Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
    b'officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_RELS = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    b'relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)


def pdf_bomb_after_raw_streams(raw: int = 3, inflated_mib: int = 64) -> bytes:
    """``raw`` pages of uncompressed text, then a page whose Flate stream inflates to
    ``inflated_mib`` MiB: a bomb behind streams that are not zlib at all (which an
    expansion check must not let use up its reading)."""
    compressor = zlib.compressobj(6)
    block = b" " * (1024 * 1024)
    bomb = compressor.compress(text_page("Bomb"))
    bomb += b"".join(compressor.compress(block) for _ in range(inflated_mib))
    bomb += compressor.flush()
    pages = [text_page(f"Raw page {n + 1}") for n in range(raw)]
    document = pdf([*pages, bomb])
    dictionary = b"<</Length %d>>stream" % len(bomb)
    return _rewritten(document, dictionary, dictionary[:-8] + b"/Filter/FlateDecode>>stream")


def pdf_bomb_under_ratio(inflated_mib: int = 128, period: int = 256) -> bytes:
    """One page whose Flate stream inflates to ``inflated_mib`` MiB at about 140:1 (a
    letter every ``period`` spaces, compressed fast), under a 200:1 expansion bound and
    a 256 MiB budget: only the converter's own limits stop it."""
    letters = b"abcdefghijklmnopqrstuvwxyz"
    block = bytearray(b" " * (1024 * 1024))
    for offset in range(0, len(block), period):
        block[offset] = letters[(offset // period) % len(letters)]
    compressor = zlib.compressobj(1)
    parts = [compressor.compress(text_page("Bomb"))]
    parts += [compressor.compress(bytes(block)) for _ in range(inflated_mib)]
    parts.append(compressor.flush())
    return pdf([b""], contents=[b"".join(parts), b"/Filter/FlateDecode"])


def truncated(document: bytes, keep: float = 0.5) -> bytes:
    """The first ``keep`` of ``document``: a download cut short (no cross-reference
    table, no trailer, an object cut in two)."""
    return document[: int(len(document) * keep)]


def zip_bomb_docx(inflated_mib: int = 64) -> bytes:
    """A DOCX whose document part inflates to ``inflated_mib`` MiB (about 1 MB on disk)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(
                b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>'
            )
            block = b"A" * (1024 * 1024)
            for _ in range(inflated_mib):
                part.write(block)
            part.write(b"</w:t></w:r></w:p></w:body></w:document>")
    return out.getvalue()


def _tnef_attribute(level: int, name: int, kind: int, data: bytes) -> bytes:
    checksum = sum(data) & 0xFFFF
    return struct.pack("<BHHI", level, name, kind, len(data)) + data + struct.pack("<H", checksum)


def tnef(files: list[tuple[str, bytes]]) -> bytes:
    """A ``winmail.dat`` (TNEF, per [MS-OXTNEF]) carrying ``files`` as its attachments:
    for each, the rendering record that starts it, its title and its data."""
    out = [struct.pack("<IH", 0x223E9F78, 0x0001)]
    out.append(_tnef_attribute(1, 0x9006, 0x0008, struct.pack("<I", 0x00010000)))  # version
    out.append(_tnef_attribute(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0)))  # codepage
    for name, data in files:
        out.append(_tnef_attribute(2, 0x9002, 0x0006, b"\x01\x00" + b"\xff" * 12))  # renddata
        out.append(_tnef_attribute(2, 0x8010, 0x0001, name.encode("latin-1") + b"\x00"))
        out.append(_tnef_attribute(2, 0x800F, 0x0006, data))
    return b"".join(out)
