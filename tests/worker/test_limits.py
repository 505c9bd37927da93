"""The per-email limits of worker.ingest.parsing and its pre-scan (parsing.mime_shape).

Pure tests: nothing is started. The pre-scan is checked against the stdlib parser's own
tree, which is what the limits protect.
"""

from __future__ import annotations

import base64
import json
import time
from email import policy
from email.message import Message
from email.parser import BytesParser

import pytest

from loadkit import hostile_mail
from tests.services import FIXTURES
from worker.ingest.parsing import (
    EmailLimits,
    LimitExceededError,
    PermanentEventError,
    mime_shape,
    parse_inbound,
)


def stdlib_shape(raw: bytes) -> tuple[int, int]:
    """(entities, depth) of the tree the stdlib parser builds."""
    root = BytesParser(policy=policy.default).parsebytes(raw)
    entities = depth = 0
    stack: list[tuple[Message, int]] = [(root, 0)]
    while stack:
        part, level = stack.pop()
        entities += 1
        depth = max(depth, level)
        if part.is_multipart():
            stack.extend((child, level + 1) for child in part.get_payload())
    return entities, depth


def fixture_raws() -> list[tuple[str, bytes]]:
    found = []
    for path in sorted(FIXTURES.glob("*.json")):
        try:
            events = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        for event in events if isinstance(events, list) else []:
            msg = event.get("msg") if isinstance(event, dict) else None
            raw = msg.get("raw_msg") if isinstance(msg, dict) else None
            if isinstance(raw, str):
                found.append((path.name, raw.encode("utf-8", "surrogatepass")))
    return found


FORWARDED = (
    "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n"
    "preamble\r\n--not-a-boundary\r\n"
    "--outer\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
    "--outer\r\nContent-Type: message/rfc822\r\n\r\n"
    "From: b@example.com\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
    "--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
    "--inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
    # No closing --inner--: the outer boundary ends the inner multipart too.
    "--outer\r\nContent-Type: image/png\r\nContent-Disposition: attachment\r\n\r\nx\r\n"
    "--outer--\r\nepilogue\r\n--outer\r\n"
)

HAND_BUILT = [
    ("forwarded", FORWARDED.encode()),
    ("parts_bomb", hostile_mail.parts_bomb(1500).encode()),
    ("deep", hostile_mail.deep_nesting(30).encode()),
    ("attachments", hostile_mail.many_attachments(40).encode()),
    ("lf_only", FORWARDED.replace("\r\n", "\n").encode()),
]


@pytest.mark.parametrize(("name", "raw"), [*fixture_raws(), *HAND_BUILT])
def test_the_scan_counts_what_the_stdlib_parser_builds(name: str, raw: bytes) -> None:
    shape = mime_shape.scan(raw)
    assert (shape.entities, shape.depth) == stdlib_shape(raw), name


def test_the_scan_counts_every_header_section() -> None:
    shape = mime_shape.scan(FORWARDED.encode())
    headers = [line for line in FORWARDED.split("\r\n") if ":" in line and " " not in line[:3]]
    assert shape.header_bytes == sum(len(line) + 2 for line in headers)


def test_a_parts_bomb_is_refused_fast_with_the_numbers() -> None:
    event = hostile_mail.inbound_event(hostile_mail.parts_bomb(33_000))
    started = time.perf_counter()
    with pytest.raises(LimitExceededError) as caught:
        parse_inbound(event)
    elapsed = time.perf_counter() - started
    print(f"33,000-part email refused in {elapsed * 1000:.1f} ms")
    assert caught.value.limit == "mime_parts"
    assert (caught.value.found, caught.value.allowed) == (33_001, 1000)
    assert str(caught.value) == "the email has at least 33001 MIME parts, over the limit of 1000"
    assert isinstance(caught.value, PermanentEventError)
    assert elapsed < 5  # a sanity bound; the stdlib parser alone takes seconds


def test_an_email_at_the_limits_parses() -> None:
    limits = EmailLimits(max_mime_parts=42, max_nesting_depth=1, max_attachments=40)
    # The message, its multipart's 41 parts (a body and 40 attachments): 42 entities.
    email = parse_inbound(hostile_mail.inbound_event(hostile_mail.many_attachments(40)), limits)
    assert len(email.attachments) == 40


def test_one_part_over_the_limit_is_refused() -> None:
    limits = EmailLimits(max_mime_parts=41)
    with pytest.raises(LimitExceededError, match="42 MIME parts, over the limit of 41"):
        parse_inbound(hostile_mail.inbound_event(hostile_mail.many_attachments(40)), limits)


def test_nesting_over_the_limit_is_refused() -> None:
    parse_inbound(hostile_mail.inbound_event(hostile_mail.deep_nesting(20)))
    with pytest.raises(LimitExceededError) as caught:
        parse_inbound(hostile_mail.inbound_event(hostile_mail.deep_nesting(21)))
    assert (caught.value.limit, caught.value.found, caught.value.allowed) == (
        "nesting_depth",
        21,
        20,
    )


def test_huge_headers_are_refused() -> None:
    raw = hostile_mail.huge_headers(2 * 1024 * 1024)
    with pytest.raises(LimitExceededError) as caught:
        parse_inbound(hostile_mail.inbound_event(raw))
    assert caught.value.limit == "header_bytes"
    assert caught.value.found > 2_000_000
    assert str(caught.value).endswith("bytes of headers, over the limit of 1048576")


def test_header_bytes_count_the_parts_headers_too() -> None:
    raw = hostile_mail.many_attachments(40)
    shape = mime_shape.scan(raw.encode())
    limits = EmailLimits(max_header_bytes=shape.header_bytes - 1)
    with pytest.raises(LimitExceededError, match="bytes of headers"):
        parse_inbound(hostile_mail.inbound_event(raw), limits)
    parse_inbound(hostile_mail.inbound_event(raw), EmailLimits(max_header_bytes=shape.header_bytes))


def test_too_many_attachment_parts_are_refused() -> None:
    # 600 parts pass the parts limit (1000) but not the attachments limit (500).
    with pytest.raises(LimitExceededError) as caught:
        parse_inbound(hostile_mail.inbound_event(hostile_mail.many_attachments(600)))
    assert (caught.value.limit, caught.value.found, caught.value.allowed) == (
        "attachments",
        600,
        500,
    )


def test_too_many_mandrill_entries_are_refused_before_any_is_decoded() -> None:
    # Invalid base64 everywhere: decoding even one would fail with another reason.
    entries = {
        f"f{i}.bin": {"name": f"f{i}.bin", "content": "!!", "base64": True} for i in range(6)
    }
    event = hostile_mail.inbound_event("From: a@example.com\r\n\r\nhi\r\n", attachments=entries)
    with pytest.raises(LimitExceededError, match="6 attachments, over the limit of 5"):
        parse_inbound(event, EmailLimits(max_attachments=5))
    with pytest.raises(PermanentEventError, match="not valid base64"):
        parse_inbound(event, EmailLimits(max_attachments=6))


def test_a_bomb_the_scan_cannot_see_is_refused_during_the_parse() -> None:
    # An RFC 2231-encoded boundary: the scan does not decode it and sees one entity,
    # the stdlib parser does and would build 1,201 of them; it stops at the 1,001st.
    raw = hostile_mail.parts_bomb(1200).replace('boundary="B"', "boundary*=us-ascii''B")
    assert mime_shape.scan(raw.encode()).entities == 1
    assert stdlib_shape(raw.encode())[0] == 1201
    with pytest.raises(LimitExceededError) as caught:
        parse_inbound(hostile_mail.inbound_event(raw))
    assert (caught.value.limit, caught.value.found) == ("mime_parts", 1001)
    assert str(caught.value) == "the email has at least 1001 MIME parts, over the limit of 1000"


def test_a_bomb_with_lone_cr_line_ends_stops_the_parse_at_the_cap() -> None:
    # The parser also ends lines at a lone CR; the scan reads lines up to LF only, so
    # it sees one entity here. Without the cap in the parser, all 33,001 are built.
    raw = hostile_mail.parts_bomb(33_000)
    head, blank, body = raw.partition("\r\n\r\n")
    raw = head + blank + body.replace("\r\n", "\r")
    assert mime_shape.scan(raw.encode()).entities == 1
    with pytest.raises(LimitExceededError) as caught:
        parse_inbound(hostile_mail.inbound_event(raw))
    assert (caught.value.limit, caught.value.found) == ("mime_parts", 1001)


def test_mandrill_entries_and_mime_parts_count_together() -> None:
    content = base64.b64encode(b"data").decode()
    entries = {
        f"m{i}.bin": {"name": f"m{i}.bin", "content": content, "base64": True} for i in range(3)
    }
    # Three entries that match no part (other names and bytes) and three parts.
    event = hostile_mail.inbound_event(hostile_mail.many_attachments(3), attachments=entries)
    assert len(parse_inbound(event, EmailLimits(max_attachments=6)).attachments) == 6
    with pytest.raises(LimitExceededError, match="6 attachments, over the limit of 5"):
        parse_inbound(event, EmailLimits(max_attachments=5))


def test_the_scan_stops_at_a_limit_and_says_so() -> None:
    bomb = hostile_mail.parts_bomb(33_000).encode()
    full = mime_shape.scan(bomb)
    stopped = mime_shape.scan(bomb, max_entities=1000)
    assert (full.entities, full.complete) == (33_001, True)
    # The rest of a flat bomb is counted without reading it.
    assert (stopped.entities, stopped.complete) == (33_001, False)
    deep = mime_shape.scan(hostile_mail.deep_nesting(5000).encode(), max_depth=20)
    assert (deep.depth, deep.complete) == (21, False)
