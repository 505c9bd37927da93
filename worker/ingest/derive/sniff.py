"""Attachment types sniffed from their bytes (puremagic, through worker.ingest.file_types),
and whether they contradict the declared type (an ``.pdf`` that is an executable). No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from worker.ingest import file_types
from worker.ingest.columns import CONTENT_TYPE_CHARS
from worker.ingest.parsing import ParsedAttachment


@dataclass(frozen=True, slots=True)
class Sniffed:
    sniffed_type: str | None  # None when the bytes match no known signature
    type_mismatch: bool


# puremagic is ambiguous on executables (a PE header also matches a dozen data formats and
# it reports no MIME type for ELF), and executables are the case that matters: check their
# magic numbers first.
_EXECUTABLES: Final = (
    (b"MZ", "application/x-msdownload"),
    (b"\x7fELF", "application/x-executable"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xce\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xfe\xed\xfa\xcf", "application/x-mach-binary"),
    (b"\xfe\xed\xfa\xce", "application/x-mach-binary"),
    (b"#!", "text/x-shellscript"),
)
_EXECUTABLE_TYPES: Final = frozenset(
    {name for _, name in _EXECUTABLES}
    | {
        "application/x-dosexec",
        "application/x-msdos-program",
        "application/vnd.microsoft.portable-executable",
    }
)
# Declared types whose bytes have one well-known signature: any other sniffed type means the
# label lies. Containers (zip, OLE, text) are left alone: an .docx is a zip, a .csv is text.
_ALIASES: Final = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
}


def sniff_attachment(attachment: ParsedAttachment) -> Sniffed:
    return sniff(attachment.content, attachment.content_type)


def sniff(content: bytes, declared: str) -> Sniffed:
    sniffed = _sniff_type(content)
    return Sniffed(sniffed_type=sniffed, type_mismatch=_mismatch(declared, sniffed))


def _sniff_type(content: bytes) -> str | None:
    for magic, name in _EXECUTABLES:
        if content.startswith(magic):
            return name
    # puremagic's answer (it reads only the head and the tail of the bytes), looked up
    # by worker.ingest.file_types; None when no signature matched (plain text, random bytes).
    found = file_types.mime_type(content)
    return found[:CONTENT_TYPE_CHARS] if found else None


def _mismatch(declared: str, sniffed: str | None) -> bool:
    if sniffed is None:
        return False
    declared = _ALIASES.get(declared.lower().strip(), declared.lower().strip())
    sniffed = _ALIASES.get(sniffed.lower(), sniffed.lower())
    if sniffed in _EXECUTABLE_TYPES:
        return declared not in _EXECUTABLE_TYPES
    if declared == "application/pdf":
        return sniffed != declared
    if declared.startswith(("image/", "audio/", "video/")):
        # A PNG labelled image/jpeg is harmless; a "photo" that is a PDF or a zip is not.
        return sniffed.split("/")[0] != declared.split("/")[0]
    return False
