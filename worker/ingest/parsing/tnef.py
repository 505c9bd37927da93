"""Outlook's ``winmail.dat`` (TNEF) unwrapped into the attachments it hides, each then
stored and converted like any other. Pure: bytes in, (name, type, bytes) out.

tnefparse (LGPL-3.0, used unmodified as a library) does the decoding. Its parser copies
the rest of the buffer for every attribute it reads, so a crafted file of many tiny
attributes costs quadratic time: the attributes are counted first, by their length
fields alone, and a file with more than :data:`MAX_ATTRIBUTES` is left wrapped.
"""

from __future__ import annotations

import mimetypes
import struct
from typing import Final

from tnefparse import TNEF

from worker.interrupts import INTERRUPTS

TNEF_SIGNATURE: Final = b"\x78\x9f\x3e\x22"
MAX_ATTRIBUTES: Final = 2000
_HEADER: Final = 6  # signature (4) + legacy key (2)
_ATTRIBUTE_OVERHEAD: Final = 11  # level (1), id (4), length (4), checksum (2)


def is_tnef(data: bytes) -> bool:
    return data.startswith(TNEF_SIGNATURE)


def _attribute_count(data: bytes) -> int | None:
    """How many attributes the file holds, or None when it is malformed."""
    offset, count = _HEADER, 0
    while offset + _ATTRIBUTE_OVERHEAD <= len(data):
        (length,) = struct.unpack_from("<I", data, offset + 5)
        offset += _ATTRIBUTE_OVERHEAD + length
        count += 1
        if count > MAX_ATTRIBUTES:
            return count
    return count if offset <= len(data) + 2 else None


def unwrap(data: bytes) -> list[tuple[str, str, bytes]]:
    """The files inside a TNEF blob as (filename, guessed content type, bytes); empty when
    it carries none, is malformed or too many-parted to read (it is kept as it came)."""
    count = _attribute_count(data)
    if count is None or count > MAX_ATTRIBUTES:
        return []
    try:
        parsed = TNEF(data, do_checksum=False)
    except INTERRUPTS:
        raise
    except Exception:  # a damaged blob: the wrapper is still stored, as it came
        return []
    found: list[tuple[str, str, bytes]] = []
    for attachment in parsed.attachments:
        payload = attachment.data
        if not isinstance(payload, bytes) or not payload:
            continue
        try:
            name = str(attachment.long_filename() or attachment.name or "")
        except (UnicodeDecodeError, AttributeError):
            name = ""
        guessed = mimetypes.guess_type(name)[0] if name else None
        found.append((name, guessed or "application/octet-stream", payload))
    return found
