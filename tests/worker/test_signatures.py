"""worker.ingest.file_types gives puremagic's own answer, for every signature puremagic knows."""

from __future__ import annotations

import random

import puremagic
import pytest

from worker.ingest import file_types

PLAIN = {
    (row.byte_match, row.offset, row.mime_type)
    for row in (*puremagic.magic_header_array, *puremagic.magic_footer_array)
}


def puremagic_answers(content: bytes) -> set[str | None]:
    """What puremagic answers: the type of its best match. Where two-part signatures rank
    equal with it, any of theirs: puremagic keeps those in a set, so which comes first
    depends on the process's hash seed."""
    try:
        ranked = puremagic.magic_string(content)
    except (puremagic.PureError, ValueError):  # no match; empty input
        return {None}
    best = ranked[0]
    tied = [
        row
        for row in ranked
        if (row.confidence, len(row.byte_match)) == (best.confidence, len(best.byte_match))
    ]
    if all((row.byte_match, row.offset, row.mime_type) in PLAIN for row in tied):
        return {best.mime_type or None}
    return {row.mime_type or None for row in tied}


def planted(rng: random.Random, size: int, *pieces: tuple[int, bytes]) -> bytes:
    """Random bytes of ``size`` with each piece written at its offset (negative: from
    the end)."""
    content = bytearray(rng.randbytes(size))
    for offset, piece in pieces:
        start = offset if offset >= 0 else size + offset
        content[start : start + len(piece)] = piece
    return bytes(content)


def contents() -> list[bytes]:
    rng = random.Random(20261201)
    found: list[bytes] = [b"", b"x", b"%PDF", b"\x89PNG\r\n\x1a\n", rng.randbytes(32 * 1024)]
    found += [rng.randbytes(rng.randrange(1, 300)) for _ in range(200)]
    found += [("plain text, no signature " * 40).encode()]
    for row in puremagic.magic_header_array:
        end = row.offset + len(row.byte_match)
        found.append(planted(rng, end + rng.randrange(0, 2000), (row.offset, row.byte_match)))
        found.append(planted(rng, end, (row.offset, row.byte_match)))  # nothing after it
        found.append(planted(rng, end, (row.offset, row.byte_match))[:-1])  # one byte short
    for row in puremagic.magic_footer_array:
        size = abs(row.offset) + len(row.byte_match) + rng.randrange(0, 2000)
        found.append(planted(rng, size, (row.offset, row.byte_match)))
    for first, seconds in puremagic.multi_part_dict.items():
        for second in seconds:
            size = max(abs(second.offset) + len(second.byte_match), 64) + rng.randrange(0, 500)
            # The first part at the offsets puremagic lists it with.
            for head in puremagic.magic_header_array:
                if head.byte_match == first:
                    found.append(
                        planted(rng, size, (head.offset, first), (second.offset, second.byte_match))
                    )
                    break
    return found


CONTENTS = contents()


@pytest.mark.parametrize("chunk", range(8))
def test_every_signature_gives_puremagics_answer(chunk: int) -> None:
    differing = [
        (content[:40], file_types.mime_type(content), puremagic_answers(content))
        for content in CONTENTS[chunk::8]
        if file_types.mime_type(content) not in puremagic_answers(content)
    ]
    assert differing == []


def test_the_contents_cover_matches_and_misses() -> None:
    answers = {file_types.mime_type(content) for content in CONTENTS}
    assert None in answers
    assert {"application/pdf", "image/png", "application/zip"} <= answers
    assert len(answers) > 100
