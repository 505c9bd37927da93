"""A cheap look at the shape of a MIME message, before the real parser builds it.

The stdlib parser builds an object per part and parses headers as it goes: a 1 MB
message of 33,000 empty parts costs it seconds, and deep nesting costs it a Python
stack frame per level. This scan reads the raw lines once, builds nothing, and counts
what those costs grow with: entities (the message, each part, each attached message),
nesting depth and header bytes. ``worker.parsing`` compares the counts with its limits
and refuses the email before parsing it.

It follows the parser's rules closely (a part starts at a ``--boundary`` line of any
open multipart, inner multiparts end with their parent; ``message/*`` parts hold a
message), but it is an estimate for exotic input (RFC 2231-encoded boundaries, digest
defaults): the parser checks the same caps again on the tree it built. Pure, no I/O.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Final

# A header line starts with a field name and a colon, or (folded) with white space.
_HEADER_LINE: Final = re.compile(rb"^(?:[\x21-\x39\x3b-\x7e]+:|[ \t])")
_CONTENT_TYPE: Final = re.compile(
    rb"^content-type:[ \t]*([!#-'*+.0-9A-Z^-~-]+)[ \t]*/[ \t]*([!#-'*+.0-9A-Z^-~-]+)",
    re.IGNORECASE,
)
_BOUNDARY: Final = re.compile(rb';\s*boundary\s*=\s*(?:"([^"]*)"|([^\s;"]+))', re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class MimeShape:
    entities: int  # the message, every part (containers too), every attached message
    depth: int  # multiparts and attached messages around the deepest entity
    header_bytes: int  # of every header section together


@dataclass(slots=True)
class _Open:
    """A multipart whose closing boundary has not been seen."""

    delimiter: bytes  # b"--" + boundary
    child_depth: int


def scan(raw: bytes) -> MimeShape:
    lines = io.BytesIO(raw)
    open_multiparts: list[_Open] = []
    entities = depth = header_bytes = 0
    # The entity whose header section comes next (the message itself first).
    pending: int | None = 0
    line = b""
    while True:
        if pending is not None:
            entities += 1
            depth = max(depth, pending)
            size, content_type, boundary, line = _header_section(lines, open_multiparts)
            header_bytes += size
            entity_depth, pending = pending, None
            if content_type is not None and content_type[0] == b"multipart" and boundary:
                open_multiparts.append(_Open(b"--" + boundary, entity_depth + 1))
            elif (
                content_type is not None
                and content_type[0] == b"message"
                and content_type[1] != b"delivery-status"
                and not line
            ):
                # The body is a whole message (headers first), one level down.
                pending = entity_depth + 1
                continue
            if not line:
                continue  # the header section ended with a blank line (or the input)
        else:
            line = lines.readline()
        if not line:
            break
        if not line.startswith(b"--") or not open_multiparts:
            continue
        match = _delimiter(line, open_multiparts)
        if match is None:
            continue
        index, closing = match
        # A boundary of an outer multipart ends every multipart inside it as well.
        child_depth = open_multiparts[index].child_depth
        del open_multiparts[index + (0 if closing else 1) :]
        if not closing:
            pending = child_depth
    return MimeShape(entities=entities, depth=depth, header_bytes=header_bytes)


def _header_section(
    lines: io.BytesIO, open_multiparts: list[_Open]
) -> tuple[int, tuple[bytes, bytes] | None, bytes | None, bytes]:
    """Read one header section: its size, its content type and boundary, and the line
    that ended it when that line is not the blank separator (a body or boundary line,
    to be looked at by the caller); b"" when a blank line or the input ended it."""
    size = 0
    header = b""  # the Content-Type header, unfolded
    in_content_type = False
    while True:
        line = lines.readline()
        if not line or line in (b"\r\n", b"\n"):
            end = b""
            break
        if line.startswith(b"--") and _delimiter(line, open_multiparts) is not None:
            end = line
            break
        if not _HEADER_LINE.match(line):
            end = line  # no separator: the body starts here (as the stdlib parser reads it)
            break
        size += len(line)
        if line[:1] in (b" ", b"\t"):
            if in_content_type:
                header += line.rstrip(b"\r\n")
            continue
        in_content_type = not header and line[:13].lower() == b"content-type:"
        if in_content_type:
            header = line.rstrip(b"\r\n")
    content_type: tuple[bytes, bytes] | None = None
    boundary: bytes | None = None
    found = _CONTENT_TYPE.match(header)
    if found:
        content_type = (found.group(1).lower(), found.group(2).lower())
        declared = _BOUNDARY.search(header, found.end())
        if declared:
            boundary = (declared.group(1) or declared.group(2) or b"").rstrip() or None
    return size, content_type, boundary, end


def _delimiter(line: bytes, open_multiparts: list[_Open]) -> tuple[int, bool] | None:
    """Which open multipart (innermost first) a ``--`` line delimits, and whether it
    closes it."""
    text = line.rstrip(b" \t\r\n")
    for index in range(len(open_multiparts) - 1, -1, -1):
        delimiter = open_multiparts[index].delimiter
        if text == delimiter:
            return index, False
        if text == delimiter + b"--":
            return index, True
    return None
