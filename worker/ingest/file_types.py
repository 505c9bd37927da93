"""Content type by magic numbers: puremagic's signatures and its answer, looked up faster.

puremagic (pinned) compares each of its ~1,400 header signatures with a slice of the
content in a Python loop: ~0.3 ms for every attachment, a few percent of a ~100 KB
email's CPU in the worker. Here its signatures are grouped by where they sit (offset and
length), so each group costs one slice and one dict lookup; the footer and multi-part
signatures (a few dozen) are checked as puremagic checks them, and the best match is
chosen by puremagic's rule. ``tests/worker/test_signatures.py`` checks the answers
against ``puremagic.from_string`` for every signature it knows.
"""

from __future__ import annotations

from puremagic import PureMagic, magic_footer_array, magic_header_array, multi_part_dict
from puremagic.main import max_foot, max_head

__all__ = ["mime_type"]

_Groups = dict[tuple[int, int], dict[bytes, list[tuple[int, PureMagic]]]]


def _header_groups() -> _Groups:
    """(offset, length) -> signature bytes -> the rows with it, each with its place in
    puremagic's list (which breaks ties, as puremagic's stable sort does)."""
    groups: _Groups = {}
    for place, row in enumerate(magic_header_array):
        by_bytes = groups.setdefault((row.offset, len(row.byte_match)), {})
        by_bytes.setdefault(row.byte_match, []).append((place, row))
    return groups


_HEADER_GROUPS = _header_groups()


def mime_type(content: bytes) -> str | None:
    """The MIME type puremagic gives ``content`` (``from_string(..., mime=True)``), or
    None where it finds none."""
    if not content:
        return None
    # The same head and tail puremagic reads (its longest offset + signature each way).
    head, foot = content[:max_head], content[-max_foot:]
    found: list[tuple[int, PureMagic]] = []
    for (offset, length), rows in _HEADER_GROUPS.items():
        end = offset + length
        if end <= len(head):
            hit = rows.get(head[offset:end])
            if hit is not None:
                found.extend(hit)
    found.sort(key=lambda placed: placed[0])
    matches = [row for _, row in found]
    matches += [row for row in magic_footer_array if _area(foot, row) == row.byte_match]
    matches += _multi_part(matches, head, foot)
    if not matches:
        return None
    # puremagic's rank: longer signatures are surer (a tenth per byte, at most 0.8), then
    # the longer one; the first in its order among equals.
    best = max(
        enumerate(matches),
        key=lambda item: (_confidence(item[1]), len(item[1].byte_match), -item[0]),
    )[1]
    return best.mime_type or None


def _area(foot: bytes, row: PureMagic) -> bytes:
    end = row.offset + len(row.byte_match)
    return foot[row.offset : end] if end != 0 else foot[row.offset :]


def _multi_part(matches: list[PureMagic], head: bytes, foot: bytes) -> list[PureMagic]:
    """Signatures in two parts: the second part of each first part matched."""
    found: list[PureMagic] = []
    for matched in matches:
        for row in multi_part_dict.get(matched.byte_match, ()):
            end = row.offset + len(row.byte_match)
            if row.offset < 0:
                if _area(foot, row) != row.byte_match:
                    continue
                byte_match = matched.byte_match + row.byte_match
            elif end > len(head) or head[row.offset : end] != row.byte_match:
                continue
            else:
                byte_match = head[matched.offset : end]
            combined = PureMagic(byte_match, row.offset, row.extension, row.mime_type, row.name)
            if combined not in found:
                found.append(combined)
    return found


def _confidence(row: PureMagic) -> float:
    length = len(row.byte_match)
    return 0.8 if length >= 9 else float(f"0.{length}")
