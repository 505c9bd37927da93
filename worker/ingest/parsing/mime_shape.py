"""A cheap look at the shape of a MIME message, before the real parser builds it.

The stdlib parser builds an object per part and parses headers as it goes: a 1 MB
message of 33,000 empty parts costs it seconds, and deep nesting costs it a Python
stack frame per level. This scan reads the raw lines once, builds nothing, and counts
what those costs grow with: entities (the message, each part, each attached message),
nesting depth and header bytes. ``worker.ingest.parsing`` compares the counts with its limits
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
    # False when the scan stopped at a limit: the counts are then lower bounds.
    complete: bool = True


@dataclass(slots=True)
class _Open:
    """A multipart whose closing boundary has not been seen."""

    delimiter: bytes  # b"--" + boundary
    child_depth: int


def scan(raw: bytes, max_entities: int | None = None, max_depth: int | None = None) -> MimeShape:
    """The shape of ``raw``, or, once it is past ``max_entities`` or ``max_depth``, what
    is known by then (``complete`` False). Past ``max_entities`` the parts still to come
    in the innermost multipart are counted at C speed (so a flat bomb of millions of
    parts gets its real count in milliseconds)."""
    lines = io.BytesIO(raw)
    open_multiparts: list[_Open] = []
    entities = depth = header_bytes = 0
    # The depth of the entity whose header section comes next (the message itself first).
    pending: int | None = 0
    line = b""
    while True:
        if pending is not None:
            entities += 1
            depth = max(depth, pending)
            too_deep = max_depth is not None and depth > max_depth
            if too_deep or (max_entities is not None and entities > max_entities):
                if not too_deep and open_multiparts:
                    entities += _remaining_parts(raw, lines.tell(), open_multiparts[-1])
                return MimeShape(entities, depth, header_bytes, complete=False)
            size, pending, line = _entity(lines, open_multiparts, pending)
            header_bytes += size
            if pending is not None or not line:
                continue  # an attached message's headers, or the body, come next
        else:
            line = lines.readline()
        if not line:
            break
        if line.startswith(b"--") and open_multiparts:
            pending = _delimited(line, open_multiparts)
    return MimeShape(entities=entities, depth=depth, header_bytes=header_bytes)


def _entity(
    lines: io.BytesIO, open_multiparts: list[_Open], depth: int
) -> tuple[int, int | None, bytes]:
    """Read an entity's header section and open what it declares: its header bytes, the
    depth of the attached message whose headers follow (for ``message/*``), and the line
    that ended the section if it was not the blank separator."""
    size, content_type, boundary, line = _header_section(lines, open_multiparts)
    if content_type is not None and content_type[0] == b"multipart" and boundary:
        open_multiparts.append(_Open(b"--" + boundary, depth + 1))
    elif (
        content_type is not None
        and content_type[0] == b"message"
        and content_type[1] != b"delivery-status"
        and not line
    ):
        return size, depth + 1, line  # the body is a whole message, one level down
    return size, None, line


def _delimited(line: bytes, open_multiparts: list[_Open]) -> int | None:
    """Apply a ``--`` line: the depth of the part it starts, or None (a closing line, or
    not a delimiter at all)."""
    match = _delimiter(line, open_multiparts)
    if match is None:
        return None
    index, closing = match
    # A boundary of an outer multipart ends every multipart inside it as well.
    child_depth = open_multiparts[index].child_depth
    del open_multiparts[index + (0 if closing else 1) :]
    return None if closing else child_depth


def _remaining_parts(raw: bytes, position: int, innermost: _Open) -> int:
    """Delimiter lines (not the closing one) of a multipart after ``position``."""
    line_start = b"\n" + innermost.delimiter
    return raw.count(line_start, position) - raw.count(line_start + b"--", position)


def _header_section(
    lines: io.BytesIO, open_multiparts: list[_Open]
) -> tuple[int, tuple[bytes, bytes] | None, bytes | None, bytes]:
    """Read one header section: its size, its content type and boundary, and the line
    that ended it when that line is not the blank separator (a body or boundary line,
    to be looked at by the caller); b"" when a blank line or the input ended it."""
    size = 0
    # The Content-Type header's lines, unfolded: joined once at the end, since adding
    # each line to a bytes object copies all before it (quadratic in folded lines).
    pieces: list[bytes] = []
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
                pieces.append(line.rstrip(b"\r\n"))
            continue
        in_content_type = not pieces and line[:13].lower() == b"content-type:"
        if in_content_type:
            pieces.append(line.rstrip(b"\r\n"))
    header = b"".join(pieces)
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
