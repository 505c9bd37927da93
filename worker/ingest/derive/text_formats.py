"""Which attachments get text (worker/text/), and as what format: decided from the
sniffed type, the declared type and the filename's extension, in that order. No I/O.

The status an attachment row starts with comes from here too: ``pending`` when its format
converts, ``skipped:type`` when it does not (images: no OCR, archives, executables), and
``skipped:container`` for a TNEF ``winmail.dat``, whose contents are attachments of their own.
"""

from __future__ import annotations

import posixpath
from typing import Final

PENDING: Final = "pending"
READY: Final = "ready"
FAILED: Final = "failed"
SKIPPED_TYPE: Final = "skipped:type"
SKIPPED_CONTAINER: Final = "skipped:container"
SKIPPED_EMPTY: Final = "skipped:empty"

TNEF_TYPES: Final = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})

# The MIME type the converter is told, by declared or sniffed type.
_BY_TYPE: Final = {
    "application/pdf": "application/pdf",
    "application/x-pdf": "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    ),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    ),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    ),
    "application/vnd.ms-excel": "application/vnd.ms-excel",
    "application/vnd.oasis.opendocument.text": "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet": (
        "application/vnd.oasis.opendocument.spreadsheet"
    ),
    "application/rtf": "application/rtf",
    "text/rtf": "application/rtf",
    "text/html": "text/html",
    "text/plain": "text/plain",
    "text/markdown": "text/markdown",
    "text/csv": "text/csv",
    "text/tab-separated-values": "text/tab-separated-values",
    "message/rfc822": "message/rfc822",
    "application/vnd.ms-outlook": "application/vnd.ms-outlook",
}
_BY_EXTENSION: Final = {
    ".pdf": "application/pdf",
    ".docx": _BY_TYPE["application/vnd.openxmlformats-officedocument.wordprocessingml.document"],
    ".xlsx": _BY_TYPE["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"],
    ".xlsm": _BY_TYPE["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"],
    ".pptx": _BY_TYPE["application/vnd.openxmlformats-officedocument.presentationml.presentation"],
    ".xls": "application/vnd.ms-excel",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".rtf": "application/rtf",
    ".html": "text/html",
    ".htm": "text/html",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".eml": "message/rfc822",
    ".msg": "application/vnd.ms-outlook",
}
# Containers whose sniffed type says "zip" though they are Office documents: the
# extension or declared type decides between them.
_GENERIC: Final = frozenset(
    {"application/zip", "application/octet-stream", "application/x-ole-storage"}
)


# Zip-based Office types: magic numbers cannot tell them apart (puremagic calls an XLSX
# a DOCX), so the declared type or the extension decides, the sniffed one only without.
_OOXML: Final = frozenset(
    value for value in _BY_TYPE.values() if "openxmlformats" in value or "opendocument" in value
)


def text_format(filename: str, content_type: str, sniffed_type: str | None) -> str | None:
    """The MIME type to convert the attachment as, or None when it gets no text."""
    declared = content_type.split(";", 1)[0].strip().lower()
    sniffed = (sniffed_type or "").lower()
    extension = posixpath.splitext(filename.lower())[1]
    if sniffed in _OOXML:
        named = _BY_TYPE.get(declared) or _BY_EXTENSION.get(extension)
        return named if named in _OOXML else sniffed
    if sniffed and sniffed not in _GENERIC and not sniffed.startswith("text/"):
        found = _BY_TYPE.get(sniffed)
        if found is not None:
            return found
        if sniffed.startswith(("image/", "audio/", "video/")) or "executable" in sniffed:
            return None
    return _BY_TYPE.get(declared) or _BY_EXTENSION.get(extension)


def is_tnef(filename: str, content_type: str) -> bool:
    declared = content_type.split(";", 1)[0].strip().lower()
    return declared in TNEF_TYPES or filename.lower() == "winmail.dat"


def initial_status(filename: str, content_type: str, sniffed_type: str | None, size: int) -> str:
    """The ``text_status`` an attachment row is inserted with."""
    if is_tnef(filename, content_type):
        return SKIPPED_CONTAINER
    if text_format(filename, content_type, sniffed_type) is None:
        return SKIPPED_TYPE
    if size == 0:
        return SKIPPED_EMPTY
    return PENDING


def is_final(status: str | None) -> bool:
    return status is not None and status != PENDING
