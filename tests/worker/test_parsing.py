"""Tests for worker.ingest.parsing: real Mandrill fixtures plus hand-built edge cases.

Pure tests: nothing is started. Expected attachment digests are computed here from the
MIME parts of raw_msg with the stdlib's compat32 parser, independently of the code under test.
"""

from __future__ import annotations

import base64
import email
import gc
import hashlib
import json
import random
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest

from tests.services import FIXTURES
from worker.ingest.parsing import (
    Address,
    BatchError,
    EmailLimits,
    LimitExceededError,
    ParsedEmail,
    PermanentEventError,
    SpamRule,
    event_kind,
    parse_batch,
    parse_event,
    parse_inbound,
)
from worker.ingest.parsing.attachments import sanitize_filename
from worker.ingest.parsing.mime import decode_base64_lines

INBOUND_FIXTURES = [
    "inbound.json",
    "inbound_html_only.json",
    "inbound_minimal_raw_only.json",
    "inbound_reply.json",
    "inbound_text_only.json",
    "inbound_with_image.json",
    "inbound_with_multiple_attachments.json",
    "inbound_with_multiple_images.json",
    "inbound_with_txt_attachment.json",
]
RAILS_VALUE = "rails_inbound_mandrill_events_value.txt"


# --------------------------------------------------------------------------- helpers


def load(name: str) -> list[Any]:
    events = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    assert isinstance(events, list)
    return events


def first_event(name: str) -> dict[str, Any]:
    if name == RAILS_VALUE:
        events = parse_batch((FIXTURES / name).read_text(encoding="utf-8"))
    else:
        events = load(name)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, dict)
    return event


def parsed(name: str) -> ParsedEmail:
    return parse_inbound(first_event(name))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mime_attachment_digests(raw_msg: str) -> list[tuple[str, str]]:
    """(filename, sha256) of every named leaf part, via compat32 (not the code under test)."""
    message = email.message_from_bytes(raw_msg.encode("utf-8"))
    found = []
    for part in message.walk():
        filename = part.get_filename()
        if part.is_multipart() or filename is None:
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found.append((filename, sha(payload)))
    return sorted(found)


def digests(result: ParsedEmail) -> list[tuple[str, str]]:
    return sorted((item.filename, item.sha256) for item in result.attachments)


def inbound_event(raw: str, **msg: Any) -> dict[str, Any]:
    return {"event": "inbound", "ts": 1700000000, "msg": {"raw_msg": raw, **msg}}


SIMPLE_RAW = (
    "From: Sender <sender@example.com>\n"
    "To: rcpt@example.com\n"
    "Subject: hello\n"
    "Message-ID: <simple@example.com>\n"
    "Date: Tue, 14 Nov 2023 22:13:20 +0000\n"
    "\n"
    "plain body\n"
)


# --------------------------------------------------------------------------- inbound fixtures


def test_inbound_basic_fields_come_from_raw_msg() -> None:
    result = parsed("inbound.json")
    assert (
        result.message_id == "<CAGBx7GhULS7d6ZsdLREHnKQ68V6w2fbGmD85dPn63s6RtpsZeQ@mail.gmail.com>"
    )
    assert result.from_address == "from@example.com"
    assert result.from_name == "From Name"
    assert result.to == (Address(name=None, address="to@example.com"),)
    assert result.cc == result.bcc == result.reply_to == ()
    assert result.subject == "[inbound] Sample Subject"
    assert result.sent_at == datetime(2012, 8, 9, 15, 44, 15, tzinfo=timezone(timedelta(hours=8)))
    assert result.sent_at.utcoffset() == timedelta(hours=8)
    assert result.mandrill_ts == datetime(2012, 8, 9, 7, 44, 17, tzinfo=UTC)
    # The fixture's envelope recipient really is the sender's address.
    assert result.envelope_recipient == "from@example.com"
    assert result.text_body == (
        "multi-line content\n\n*multi-line content\n*\n*with some formatting*\n\n"
        "multi-line content\n\n"
    )
    assert result.html_body is not None
    assert result.html_body.startswith("multi-line content<br><br><b>multi-line content")
    assert result.attachments == ()
    assert result.tags == ()
    assert (result.spam_score, result.spam_rules) == (None, ())
    assert (result.spf_result, result.spf_detail) == (None, None)
    assert (result.dkim_signed, result.dkim_valid) == (None, None)


def test_inbound_raw_and_headers() -> None:
    event = first_event("inbound.json")
    result = parse_inbound(event)
    raw = event["msg"]["raw_msg"].encode("utf-8")
    assert result.raw == raw
    assert result.raw_sha256 == sha(raw)
    names = [name for name, _ in result.headers]
    assert names == [
        "Received",
        "Received",
        "DKIM-Signature",
        "MIME-Version",
        "Received",
        "Received",
        "Date",
        "Message-ID",
        "Subject",
        "From",
        "To",
        "Content-Type",
    ]
    values = dict(result.headers)
    assert values["Subject"] == "[inbound] Sample Subject"
    # Folded values come back unfolded.
    assert all("\n" not in value for _, value in result.headers)
    assert result.headers[3] == ("MIME-Version", "1.0")


def test_reply_recipients_come_from_raw_msg_not_mandrills_mis_split_to() -> None:
    event = first_event("inbound_reply.json")
    # The trap is really in the fixture: Mandrill split the To header on the wrong comma.
    assert event["msg"]["to"][0] == ["to@example.com,", None]
    result = parse_inbound(event)
    assert result.to == (
        Address(name=None, address="to@example.com"),
        Address(name="Other To", address="other.to@example.com"),
    )
    assert result.cc == (Address(name=None, address="cc@example.com"),)
    assert result.subject == "[inbound] Sample Subject 2"
    assert result.text_body == "asfasdf\nasdf\nasdf\nasdf\nasdf\n\n"
    assert result.html_body == "asfasdf<br>asdf<br>asdf<br>asdf<br>asdf<br>\n\n"


def test_reply_threading_headers_fall_back_to_mandrill_headers() -> None:
    event = first_event("inbound_reply.json")
    # This fixture's raw_msg lost In-Reply-To/References; only Mandrill's headers have them.
    assert "In-Reply-To" not in event["msg"]["raw_msg"]
    result = parse_inbound(event)
    assert (
        result.in_reply_to == "<CAGBx7GhULS7d6ZsdLREHnKQ68V6w2fbGmD85dPn63s6RtpsZeQ@mail.gmail.com>"
    )
    assert result.references == (
        "<CAGBx7GhULS7d6ZsdLREHnKQ68V6w2fbGmD85dPn63s6RtpsZeQ@mail.gmail.com>",
        "<9999999999999@mail.gmail.com>",
    )
    assert "In-Reply-To" not in dict(result.headers)


def test_html_only_verdicts_and_raw_msg_precedence() -> None:
    result = parsed("inbound_html_only.json")
    assert result.spam_score == 3.1
    assert len(result.spam_rules) == 10
    assert result.spam_rules[0] == SpamRule(
        name="URIBL_BLOCKED",
        score=0.0,
        description="ADMINISTRATOR NOTICE: The query to URIBL was blocked.",
    )
    # The null-named rule is kept, not dropped.
    assert result.spam_rules[1] == SpamRule(name=None, score=0.0, description=None)
    assert result.spam_rules[-1] == SpamRule(
        name="HTML_MIME_NO_HTML_TAG",
        score=0.6,
        description="HTML-only message, but there is no HTML tag",
    )
    assert (result.spf_result, result.spf_detail) == ("none", "")
    assert (result.dkim_signed, result.dkim_valid) == (False, False)
    # raw_msg wins over Mandrill's own fields, which disagree in this fixture.
    assert result.from_address == "xxxx.xxxx@xxxx.co.uk"
    assert result.from_name is None
    assert result.subject == "Re: Leeroy, you have a question from Toni about offer 88206"
    assert result.to == (Address(name=None, address="offer-88206@inbound.xxxx.co.uk"),)
    assert result.cc == (Address(name=None, address="xxxx.xxxx@xxxx.co.uk"),)
    assert result.in_reply_to == (
        "<5295e0a55ab73_29e0ebc103b1@4830b3e0-2675-41d3-8df8-dc78e0a45544.mail>"
    )
    assert result.references == (result.in_reply_to,)
    assert result.sent_at == datetime(2013, 11, 27, 13, 33, 30, tzinfo=UTC)
    assert result.envelope_recipient == "offer-88206@inbound.xxxx.co.uk"
    # No text anywhere; html is Mandrill's.
    assert result.text_body is None
    assert result.html_body == first_event("inbound_html_only.json")["msg"]["html"]
    assert result.attachments == ()


def test_minimal_payload_takes_everything_from_raw_msg() -> None:
    event = first_event("inbound_minimal_raw_only.json")
    assert set(event["msg"]) == {"raw_msg", "email", "sender", "spam_report"}
    result = parse_inbound(event)
    assert result.message_id == "<CAEPk3RKEx@mail.example.org>"
    assert result.from_address == "test@example.org"
    assert result.from_name == "A tester"
    assert result.to == (
        Address(name="Test, Inbound", address="test@inbound.example.com"),
        Address(name=None, address="other@example.com"),
    )
    assert result.subject == "Test subject"
    assert result.text_body == "It's a body\N{HORIZONTAL ELLIPSIS}\n"
    assert result.html_body == '<div dir="ltr">It\'s a body\N{HORIZONTAL ELLIPSIS}</div>\n'
    assert result.sent_at == datetime(2017, 10, 13, 1, 3, 30, tzinfo=UTC)
    assert result.envelope_recipient == "delivered-to@example.com"
    assert result.spam_score == 1.7
    assert result.spam_rules == ()
    assert result.spf_result is None
    assert result.dkim_signed is None
    assert result.attachments == ()


def test_text_only_old_attachment_without_base64_flag() -> None:
    event = first_event("inbound_text_only.json")
    assert "base64" not in event["msg"]["attachments"]["sample.txt"]
    assert "html" not in event["msg"]
    result = parse_inbound(event)
    assert result.text_body == "this one has a text file attachment\n\n"
    # html missing from the payload: taken from raw_msg's text/html part.
    assert result.html_body == '<div dir="ltr">this one has a text file attachment</div>\n'
    (attachment,) = result.attachments
    assert attachment.filename == "sample.txt"
    assert attachment.content_type == "text/plain"
    assert attachment.content == b"This is \na sample\ntext file\n"
    assert attachment.size == 28
    assert attachment.sha256 == sha(attachment.content)
    assert attachment.content_id is None
    assert attachment.inline is False
    assert digests(result) == mime_attachment_digests(event["msg"]["raw_msg"])


def test_txt_attachment_with_base64_false() -> None:
    event = first_event("inbound_with_txt_attachment.json")
    assert event["msg"]["attachments"]["sample.txt"]["base64"] is False
    result = parse_inbound(event)
    (attachment,) = result.attachments
    assert (attachment.filename, attachment.content_type) == ("sample.txt", "text/plain")
    assert attachment.content == b"This is \na sample\ntext file\n"
    assert digests(result) == mime_attachment_digests(event["msg"]["raw_msg"])
    assert result.html_body == '<div dir="ltr">this one has a text file attachment</div>\n\n'


def test_multiple_attachments_pdf_and_text() -> None:
    event = first_event("inbound_with_multiple_attachments.json")
    result = parse_inbound(event)
    by_name = {item.filename: item for item in result.attachments}
    assert sorted(by_name) == ["sample.pdf", "sample.txt"]
    pdf = by_name["sample.pdf"]
    assert pdf.content_type == "application/pdf"
    assert pdf.content.startswith(b"%PDF-1.3")
    assert pdf.size == len(pdf.content) == 80156
    assert pdf.content == base64.b64decode(event["msg"]["attachments"]["sample.pdf"]["content"])
    assert by_name["sample.txt"].content == b"This is \na sample\ntext file\n"
    assert digests(result) == mime_attachment_digests(event["msg"]["raw_msg"])
    assert result.subject == "test 3 with multiple attachments"


def test_image_without_base64_flag_is_base64() -> None:
    event = first_event("inbound_with_image.json")
    assert "base64" not in event["msg"]["images"]["sample.png"]
    result = parse_inbound(event)
    (image,) = result.attachments
    assert image.filename == "sample.png"
    assert image.content_type == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert image.size == 5246
    # Filed under "images" but sent with Content-Disposition: attachment, no Content-ID.
    assert image.inline is False
    assert image.content_id is None
    assert digests(result) == mime_attachment_digests(event["msg"]["raw_msg"])
    # RFC 2047 display name decoded.
    assert result.from_name == "Emil S\N{LATIN SMALL LETTER A WITH RING ABOVE}gfors"
    assert result.from_address == "from@example.com"


def test_multiple_images() -> None:
    event = first_event("inbound_with_multiple_images.json")
    result = parse_inbound(event)
    assert [(item.filename, item.content_type) for item in result.attachments] == [
        ("sample.jpg", "image/jpeg"),
        ("sample.png", "image/png"),
    ]
    assert result.attachments[0].content.startswith(b"\xff\xd8\xff\xe0")
    assert digests(result) == mime_attachment_digests(event["msg"]["raw_msg"])
    assert result.text_body == "this has two image attachments\n\n"


def test_an_rfc822_comment_names_the_sender() -> None:
    """``addr (Name)``: the policy's parser drops the comment; the name is still From's."""
    raw = SIMPLE_RAW.split("\n", 1)[1]
    commented = parse_inbound(inbound_event("From: ana@x.example (Ana Lima)\n" + raw))
    assert (commented.from_address, commented.from_name) == ("ana@x.example", "Ana Lima")
    # A display name wins over a trailing comment, and a bare address has no name.
    named = parse_inbound(inbound_event('From: "Ana L." <ana@x.example> (work)\n' + raw))
    assert named.from_name == "Ana L."
    bare = parse_inbound(inbound_event("From: ana@x.example\n" + raw))
    assert bare.from_name is None


def test_inbound_without_msg_is_permanent() -> None:
    event = first_event("inbound_without_msg.json")
    assert event_kind(event) == "inbound"
    with pytest.raises(PermanentEventError, match="no msg"):
        parse_inbound(event)


def test_rails_mandrill_events_value() -> None:
    events = parse_batch((FIXTURES / RAILS_VALUE).read_text(encoding="utf-8"))
    assert len(events) == 1
    assert event_kind(events[0]) == "inbound"
    result = parse_inbound(events[0])
    assert result.message_id == "<0CB459E0-0336-41DA-BC88-E6E28C697DDB@37signals.com>"
    assert (result.from_name, result.from_address) == ("Jason Fried", "jason@37signals.com")
    assert result.to == (Address(name="Replies", address="replies@example.com"),)
    assert result.subject == "Discussion: Let's debate these attachments"
    assert result.in_reply_to == "<4e6e35f5a38b4_479f13bb90078178@small-app-01.mail>"
    assert result.references == ("<4e6e35f5a38b4_479f13bb90078178@small-app-01.mail>",)
    assert result.text_body == "Let's talk about these images:\n\n"
    assert result.html_body is None
    assert result.envelope_recipient is None
    assert result.mandrill_ts is None
    # No Mandrill attachments/images: both inline images come from the MIME parts.
    assert [(a.filename, a.content_id, a.inline) for a in result.attachments] == [
        ("avatar1.jpeg", "7AAEB353-2341-4D46-A054-5CA5CB2363B7", True),
        ("avatar2.jpg", "4594E827-6E69-4329-8691-6BC35E3E73A0", True),
    ]
    assert digests(result) == mime_attachment_digests(events[0]["msg"]["raw_msg"])


@pytest.mark.parametrize("name", [*INBOUND_FIXTURES, RAILS_VALUE])
def test_every_fixture_attachment_matches_its_mime_part(name: str) -> None:
    event = first_event(name)
    result = parse_inbound(event)
    expected = mime_attachment_digests(event["msg"]["raw_msg"])
    assert digests(result) == expected
    for attachment in result.attachments:
        assert attachment.sha256 == sha(attachment.content)
        assert attachment.size == len(attachment.content)
    assert result.raw_sha256 == sha(event["msg"]["raw_msg"].encode("utf-8"))
    # Bodies are never lost: every fixture has at least one.
    assert result.text_body or result.html_body


@pytest.mark.parametrize("name", [*INBOUND_FIXTURES, RAILS_VALUE])
def test_payload_content_stays_out_of_repr(name: str) -> None:
    result = parse_inbound(first_event(name))
    text = repr(result)
    for body in (result.text_body, result.html_body):
        if body and len(body.strip()) > 8:
            assert body.strip() not in text
    assert "raw=" not in text
    for attachment in result.attachments:
        assert "content=" not in repr(attachment)


# --------------------------------------------------------------------------- dedup keys


def test_same_email_in_two_payload_shapes_has_one_dedup_key() -> None:
    text_only = parsed("inbound_text_only.json")
    with_txt = parsed("inbound_with_txt_attachment.json")
    assert text_only.dedup_key == with_txt.dedup_key
    assert text_only.raw_sha256 == with_txt.raw_sha256


def test_different_emails_have_different_dedup_keys() -> None:
    keys = [parsed(name).dedup_key for name in [*INBOUND_FIXTURES, RAILS_VALUE]]
    # text_only and with_txt_attachment are the same email; everything else differs.
    assert len(set(keys)) == len(keys) - 1
    assert all(len(key) == 64 for key in keys)


def test_dedup_key_definition_and_recipient_case() -> None:
    event = first_event("inbound.json")
    result = parse_inbound(event)
    expected = sha(f"{result.message_id}\x00{result.raw_sha256}\x00from@example.com".encode())
    assert result.dedup_key == expected
    event["msg"]["email"] = "FROM@Example.com"
    assert parse_inbound(event).dedup_key == expected
    # Mandrill posts once per route recipient: another recipient is another copy.
    event["msg"]["email"] = "other@example.com"
    assert parse_inbound(event).dedup_key != expected


# --------------------------------------------------------------------------- other events


@pytest.mark.parametrize(
    ("name", "kind", "mandrill_id", "ts"),
    [
        ("send.json", "send", "9a32184309ad4d5e9bfd20368d9d7981", 1350691301),
        ("open.json", "open", "12847763.9a32184309ad4d5e9bfd20368d9d7981", 1350693075),
        ("click.json", "click", "8606637.6692f6cac28e45a9b371e182d5ca0a35", 1350377135),
    ],
)
def test_tracking_events(name: str, kind: str, mandrill_id: str, ts: int) -> None:
    event = first_event(name)
    assert event_kind(event) == kind
    result = parse_event(event)
    assert result.kind == kind
    assert result.mandrill_id == mandrill_id
    assert result.recipient == "to@example.com"
    assert result.occurred_at == datetime.fromtimestamp(ts, tz=UTC)
    assert result.payload is event
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert result.dedup_key == sha(canonical.encode("utf-8"))


@pytest.mark.parametrize(
    ("name", "kind", "count"),
    [("sync_blacklist.json", "sync.blacklist", 3), ("sync_whitelist.json", "sync.whitelist", 2)],
)
def test_sync_events(name: str, kind: str, count: int) -> None:
    events = load(name)
    assert len(events) == count
    results = [parse_event(event) for event in events]
    assert [result.kind for result in results] == [kind] * count
    assert {result.recipient for result in results} == {"example.webhook@mandrillapp.com"}
    assert {result.mandrill_id for result in results} == {None}
    assert {result.occurred_at for result in results} == {
        datetime.fromtimestamp(events[0]["ts"], tz=UTC)
    }
    # The events differ only in "action" and must stay distinct.
    assert len({result.dedup_key for result in results}) == count


def test_event_dedup_key_ignores_key_order() -> None:
    event = first_event("send.json")
    reordered = dict(reversed(list(event.items())))
    assert list(reordered) != list(event)
    assert parse_event(reordered).dedup_key == parse_event(event).dedup_key
    changed = {**event, "ts": event["ts"] + 1}
    assert parse_event(changed).dedup_key != parse_event(event).dedup_key


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"event": "inbound"}, "inbound"),
        ({"event": "hard_bounce", "msg": {}}, "hard_bounce"),
        ({"event": "delivered"}, "delivered"),
        ({"event": "some_new_kind"}, "some_new_kind"),
        ({"type": "blacklist", "action": "add"}, "sync.blacklist"),
        ({"type": "whitelist"}, "sync.whitelist"),
        ({"event": "open", "type": "blacklist"}, "open"),
        ({"event": None, "type": "blacklist"}, "unknown"),
        ({"event": 5}, "unknown"),
        ({"event": ""}, "unknown"),
        ({"type": 3}, "unknown"),
        ({}, "unknown"),
        ([], "unknown"),
        ("inbound", "unknown"),
        (None, "unknown"),
        (42, "unknown"),
    ],
)
def test_event_kind(event: Any, kind: str) -> None:
    assert event_kind(event) == kind


@pytest.mark.parametrize(
    "event",
    [None, 1, 2.5, True, "text", [], [1, {"a": 2}], {}, {"msg": "x"}, {"msg": []}, {"ts": "no"}],
)
def test_parse_event_accepts_any_json_value(event: Any) -> None:
    result = parse_event(event)
    if isinstance(event, dict):
        assert result.payload is event
    else:
        assert result.kind == "unknown"
        assert result.payload == {"value": event}
    assert result.occurred_at is None
    assert result.mandrill_id is None
    assert result.recipient is None
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert result.dedup_key == sha(canonical.encode("utf-8"))


@pytest.mark.parametrize("ts", [True, "1350691301", 1e300, float("nan"), None, [1]])
def test_parse_event_bad_timestamps_give_none(ts: Any) -> None:
    assert parse_event({"event": "send", "ts": ts}).occurred_at is None


def test_parse_event_sync_without_email_and_message_event_without_msg() -> None:
    assert parse_event({"type": "blacklist", "reject": {"email": 5}}).recipient is None
    assert parse_event({"type": "whitelist", "entry": "x"}).recipient is None
    result = parse_event({"event": "reject", "ts": 0, "msg": {"_id": "", "email": " a@b.c "}})
    assert (result.mandrill_id, result.recipient) == (None, "a@b.c")
    assert result.occurred_at == datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- parse_batch


def test_parse_batch_returns_the_list() -> None:
    assert parse_batch("[]") == []
    assert parse_batch('[{"event":"send"}, 3]') == [{"event": "send"}, 3]
    # Mandrill's PHP-style escaped slashes decode normally.
    assert parse_batch('[{"url":"http:\\/\\/x"}]') == [{"url": "http://x"}]


@pytest.mark.parametrize(
    "value", ["", "not json", "[1,", '{"event":"send"}', '"[]"', "3", "null", "[1]x"]
)
def test_parse_batch_rejects_non_arrays(value: str) -> None:
    with pytest.raises(BatchError):
        parse_batch(value)


def test_parse_batch_error_does_not_quote_the_payload() -> None:
    with pytest.raises(BatchError) as caught:
        parse_batch('{"secret-token": 1}')
    assert "secret-token" not in str(caught.value)
    assert "object" in str(caught.value)


# --------------------------------------------------------------------------- sanitize_filename


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("/abs/path/file.txt", "file.txt"),
        ("C:\\Users\\me\\Desktop\\invoice.pdf", "invoice.pdf"),
        ("mixed/sep\\name.doc", "name.doc"),
        ("a\x00b\x07c\nd\te.txt", "abcde.txt"),
        ("evil\u202egpj.exe", "evilgpj.exe"),  # right-to-left override removed
        ("Cafe\u0301 d\u0301.txt", "Caf\u00e9 d\u0301.txt"),  # NFC; d + accent has no composed form
        (
            "\u0444\u0430\u0439\u043b \u6587\u4ef6 \U0001f4ce.pdf",
            "\u0444\u0430\u0439\u043b \u6587\u4ef6 \U0001f4ce.pdf",
        ),
        ("  spaced name.txt  ", "spaced name.txt"),
        (".bashrc", "bashrc"),
        ("...hidden", "hidden"),
        (". . .x", "x"),
        ("archive.tar.gz", "archive.tar.gz"),
    ],
)
def test_sanitize_filename(name: str, expected: str) -> None:
    assert sanitize_filename(name, "attachment-1") == expected


@pytest.mark.parametrize(
    "name",
    ["", " ", ".", "..", "...", "../..", "dir/", "a/..", "\x00\x01", "\u200b", None, 7, b"x.pdf"],
)
def test_sanitize_filename_falls_back(name: object) -> None:
    assert sanitize_filename(name, "attachment-3") == "attachment-3"


def test_sanitize_filename_truncates_keeping_the_extension() -> None:
    result = sanitize_filename("a" * 300 + ".pdf", "x")
    assert len(result) == 200
    assert result == "a" * 196 + ".pdf"
    no_extension = sanitize_filename("b" * 500, "x")
    assert no_extension == "b" * 200
    huge_extension = sanitize_filename("c." + "d" * 400, "x")
    assert len(huge_extension) == 200
    assert huge_extension.startswith("c.ddd")


def test_sanitize_filename_never_returns_dangerous_names() -> None:
    for name in ["", ".", "..", "/", "\\", "./.", ". .", "\t..\t", "a/.", "..\\..", "\u0085.."]:
        result = sanitize_filename(name, "fallback")
        assert result not in {"", ".", ".."}
        assert "/" not in result
        assert "\\" not in result


# --------------------------------------------------------------------------- malformed input


def test_header_that_makes_the_stdlib_raise_does_not_fail_the_email() -> None:
    raw = (
        "From: Sender <sender@example.com>\n"
        "To: good@example.com, x@[\n"
        "Cc: <\n"
        "Subject: still here\n"
        "\n"
        "body\n"
    )
    stdlib = BytesParser(policy=policy.default).parsebytes(raw.encode())
    # Precondition: plain header access really raises for these headers.
    with pytest.raises((AttributeError, IndexError)):
        str(stdlib["To"])
    with pytest.raises(IndexError):
        str(stdlib["Cc"])
    result = parse_inbound(inbound_event(raw))
    assert Address(name=None, address="good@example.com") in result.to
    assert all(address.address for address in result.to)
    assert result.cc == ()
    assert result.subject == "still here"
    assert result.text_body == "body\n"
    assert ("To", "good@example.com, x@[") in result.headers
    assert ("Cc", "<") in result.headers


def test_undecodable_header_bytes_and_declared_charset_trap() -> None:
    # Mandrill transcodes raw_msg to UTF-8 but leaves the declared charset as it was.
    raw = (
        "From: J\u00f6rg <jorg@example.com>\n"
        "To: b@example.com\n"
        "Subject: Gr\u00fc\u00dfe\n"
        "Date: not a date\n"
        "MIME-Version: 1.0\n"
        'Content-Type: text/plain; charset="iso-8859-1"\n'
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        "Gr\u00fc\u00dfe aus K\u00f6ln\n"
    )
    result = parse_inbound(inbound_event(raw, text=None, html=None))
    assert result.from_name == "J\u00f6rg"
    assert result.subject == "Gr\u00fc\u00dfe"
    assert result.text_body == "Gr\u00fc\u00dfe aus K\u00f6ln\n"
    assert result.sent_at is None
    for name, value in result.headers:
        name.encode("utf-8")
        value.encode("utf-8")


def test_quoted_printable_body_uses_the_declared_charset() -> None:
    raw = (
        "From: a@example.com\n"
        "Date: Tue, 14 Nov 2023 22:13:20 -0000\n"
        "Content-Type: multipart/alternative; boundary=xx\n"
        "\n"
        "--xx\n"
        "Content-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
        "K=F6ln\n"
        "--xx\n"
        "Content-Type: text/html; charset=x-no-such-charset\n"
        "\n"
        "<p>hi</p>\n"
        "--xx--\n"
    )
    result = parse_inbound(inbound_event(raw))
    # The line break before a boundary belongs to the boundary.
    assert result.text_body == "K\u00f6ln"
    assert result.html_body == "<p>hi</p>"
    # "-0000" means an unknown zone: read as UTC, still tz-aware.
    assert result.sent_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_strings_are_storable() -> None:
    event = inbound_event(
        SIMPLE_RAW,
        text="a\x00b",
        html="<p>\ud800</p>",
        tags=["x\x00y", 1, None, "z"],
        email="rcpt@example.com",
    )
    result = parse_inbound(event)
    assert result.text_body == "ab"
    assert result.html_body is not None
    result.html_body.encode("utf-8")
    assert result.tags == ("xy", "z")


def test_wrong_verdict_types_are_ignored() -> None:
    event = inbound_event(
        SIMPLE_RAW,
        spam_report={"score": "high", "matched_rules": [{"name": 3, "score": "x"}, "junk"]},
        spf=[],
        dkim={"signed": "yes", "valid": 1},
        tags="not-a-list",
        headers=[],
    )
    result = parse_inbound(event)
    assert result.spam_score is None
    assert result.spam_rules == (SpamRule(name=None, score=None, description=None),)
    assert (result.spf_result, result.spf_detail) == (None, None)
    assert (result.dkim_signed, result.dkim_valid) == (None, None)
    assert result.tags == ()
    assert result.subject == "hello"
    assert result.sent_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_sender_and_subject_fall_back_to_mandrill_fields() -> None:
    raw = "To: r@example.com\n\nbody\n"
    result = parse_inbound(
        inbound_event(raw, from_email="f@example.com", from_name=" F ", subject="from mandrill")
    )
    assert (result.from_address, result.from_name) == ("f@example.com", "F")
    assert result.subject == "from mandrill"
    assert result.message_id is None
    assert result.references == ()


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ([], "event is not a JSON object (got array)"),
        ("x", "event is not a JSON object (got string)"),
        ({"event": "inbound"}, "inbound event has no msg"),
        ({"event": "inbound", "msg": None}, "inbound event has no msg"),
        ({"event": "inbound", "msg": []}, "msg is not a JSON object (got array)"),
        ({"event": "inbound", "msg": {}}, "msg.raw_msg is not a string (got null)"),
        ({"event": "inbound", "msg": {"raw_msg": 5}}, "msg.raw_msg is not a string (got number)"),
    ],
)
def test_unusable_inbound_shapes_are_permanent(event: Any, reason: str) -> None:
    with pytest.raises(PermanentEventError) as caught:
        parse_inbound(event)
    assert str(caught.value) == reason


def attachment_entry(**fields: Any) -> dict[str, Any]:
    return {"name": "secret-name.pdf", "type": "application/pdf", **fields}


@pytest.mark.parametrize(
    ("msg_fields", "reason"),
    [
        ({"attachments": ["x"]}, "msg.attachments is not a JSON object (got array)"),
        ({"attachments": "x"}, "msg.attachments is not a JSON object (got string)"),
        ({"images": 3}, "msg.images is not a JSON object (got number)"),
        ({"attachments": {"secret-name.pdf": "x"}}, "msg.attachments entry #1 is not a JSON"),
        (
            {
                "attachments": {
                    "secret-name.pdf": attachment_entry(content="@@not base64@@", base64=True)
                }
            },
            "msg.attachments entry #1 content is not valid base64",
        ),
        (
            {"attachments": {"secret-name.pdf": attachment_entry(content="QUJ", base64=True)}},
            "content is not valid base64",
        ),
        (
            {"images": {"secret-name.png": attachment_entry(content="not*base64")}},
            "msg.images entry #1 content is not valid base64",
        ),
        (
            {"attachments": {"secret-name.pdf": attachment_entry(content=None, base64=True)}},
            "content is not a string (got null)",
        ),
        (
            {"attachments": {"secret-name.pdf": attachment_entry(content="QUJD", base64="yes")}},
            "base64 flag is not a boolean (got string)",
        ),
    ],
)
def test_bad_attachment_fields_are_permanent(msg_fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(PermanentEventError) as caught:
        parse_inbound(inbound_event(SIMPLE_RAW, **msg_fields))
    assert reason in str(caught.value)
    assert "secret-name" not in str(caught.value)


def test_empty_php_array_attachments_mean_none() -> None:
    result = parse_inbound(inbound_event(SIMPLE_RAW, attachments=[], images=None))
    assert result.attachments == ()


def test_deeply_nested_mime_is_permanent_not_a_crash() -> None:
    depth = 1200
    raw = "From: a@example.com\n"
    raw += "".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(depth)
    )
    raw += "Content-Type: text/plain\n\nhi\n"
    raw += "".join(f"--b{i}--\n" for i in reversed(range(depth)))
    # The nesting cap refuses it first; without the cap, the parser's RecursionError
    # is still a permanent failure.
    with pytest.raises(
        LimitExceededError, match="at least 21 levels of MIME nesting, over the limit of 20"
    ):
        parse_inbound(inbound_event(raw))
    unlimited = EmailLimits(max_nesting_depth=10 * depth, max_mime_parts=10 * depth)
    with pytest.raises(PermanentEventError, match="could not be parsed as MIME"):
        parse_inbound(inbound_event(raw), unlimited)


# --------------------------------------------------------------------------- attachments


PDF_BYTES = b"%PDF-1.4 inner pdf \x00\xff\xfe binary"
PNG_BYTES = b"\x89PNG\r\n\x1a\n inline image"
OUTER_BYTES = b"outer attachment \xe2\x82\xac\n"


def forwarded_raw() -> str:
    inner = EmailMessage()
    inner["From"] = "Original <original@example.com>"
    inner["To"] = "first@example.com"
    inner["Subject"] = "the original"
    inner.set_content("inner body\n")
    inner.add_attachment(PDF_BYTES, maintype="application", subtype="pdf", filename="inner.pdf")
    inner.add_attachment(
        PNG_BYTES, maintype="image", subtype="png", disposition="inline", cid="<img1@example.com>"
    )
    outer = EmailMessage()
    outer["From"] = "Forwarder <fwd@example.com>"
    outer["To"] = "inbox@example.com"
    outer["Subject"] = "Fwd: the original"
    outer["Message-ID"] = "<fwd@example.com>"
    outer.set_content("see below\n")
    outer.add_attachment(OUTER_BYTES, maintype="text", subtype="plain", filename="outer.txt")
    outer.add_attachment(inner)  # message/rfc822
    return outer.as_bytes().decode("utf-8")


def test_forwarded_message_nested_parts_are_found() -> None:
    raw = forwarded_raw()
    stdlib = email.message_from_bytes(raw.encode(), policy=policy.default)
    assert isinstance(stdlib, EmailMessage)
    # Precondition: iter_attachments() does not see the forwarded message's parts.
    shallow = [part.get_filename() for part in stdlib.iter_attachments()]
    assert "inner.pdf" not in shallow
    event = inbound_event(
        raw,
        text=None,
        attachments={
            "outer.txt": {
                "name": "outer.txt",
                "type": "text/plain",
                "content": base64.b64encode(OUTER_BYTES).decode(),
                "base64": True,
            }
        },
    )
    result = parse_inbound(event)
    by_name = {item.filename: item for item in result.attachments}
    assert set(by_name) == {"outer.txt", "inner.pdf", "attachment-3"}
    assert by_name["outer.txt"].content == OUTER_BYTES
    assert by_name["inner.pdf"].content == PDF_BYTES
    assert by_name["inner.pdf"].sha256 == sha(PDF_BYTES)
    assert by_name["inner.pdf"].content_type == "application/pdf"
    assert by_name["inner.pdf"].inline is False
    image = by_name["attachment-3"]
    assert image.content == PNG_BYTES
    assert (image.content_id, image.inline, image.content_type) == (
        "img1@example.com",
        True,
        "image/png",
    )
    # The message/rfc822 container itself is not an attachment, and the body is the outer one.
    assert all(item.content_type != "message/rfc822" for item in result.attachments)
    assert result.text_body == "see below\n"
    assert result.subject == "Fwd: the original"
    assert result.to == (Address(name=None, address="inbox@example.com"),)


def two_same_named_parts_raw() -> str:
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["Subject"] = "two photos"
    message.set_content("photos\n")
    message.add_attachment(b"first photo", maintype="image", subtype="jpeg", filename="image.jpeg")
    message.add_attachment(b"second photo", maintype="image", subtype="jpeg", filename="image.jpeg")
    return message.as_bytes().decode("utf-8")


def test_same_named_parts_are_both_kept() -> None:
    # Mandrill's object is keyed by filename, so it can carry only one of them.
    event = inbound_event(
        two_same_named_parts_raw(),
        images={
            "image.jpeg": {
                "name": "image.jpeg",
                "type": "image/jpeg",
                "content": base64.b64encode(b"second photo").decode(),
            }
        },
    )
    result = parse_inbound(event)
    assert [item.content for item in result.attachments] == [b"second photo", b"first photo"]
    assert {item.filename for item in result.attachments} == {"image.jpeg"}


def test_image_keyed_by_content_id() -> None:
    message = EmailMessage()
    message["From"] = "a@example.com"
    message.set_content("text\n")
    message.add_alternative('<img src="cid:ii_abc123">', subtype="html")
    html_part = message.get_body(preferencelist=("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(
        PNG_BYTES,
        maintype="image",
        subtype="png",
        cid="<ii_abc123>",
        filename="photo.png",
        disposition="inline",
    )
    raw = message.as_bytes().decode("utf-8")
    event = inbound_event(
        raw,
        images={
            "ii_abc123": {
                "name": "photo.png",
                "type": "image/png",
                "content": base64.b64encode(PNG_BYTES).decode(),
            }
        },
    )
    result = parse_inbound(event)
    (image,) = result.attachments
    assert (image.filename, image.content_id, image.inline) == ("photo.png", "ii_abc123", True)
    assert image.sha256 == sha(PNG_BYTES)
    assert result.html_body == '<img src="cid:ii_abc123">\n'


def test_image_keyed_by_content_id_without_mime_part() -> None:
    event = inbound_event(
        SIMPLE_RAW,
        images={
            "<ii_zzz>": {
                "name": "logo.png",
                "type": "image/png",
                "content": base64.b64encode(PNG_BYTES).decode(),
            }
        },
    )
    (image,) = parse_inbound(event).attachments
    assert (image.filename, image.content_id, image.inline) == ("logo.png", "ii_zzz", True)


def test_mandrill_entry_details() -> None:
    long_type = "application/" + "x" * 400
    event = inbound_event(
        SIMPLE_RAW,
        attachments={
            "../../evil\\name.txt": {
                "name": "../../evil\\name.txt",
                "type": "",
                "content": "caf\u00e9\n",
                "base64": False,
            },
            "nameless": {
                "name": None,
                "type": long_type,
                "content": "QUJD\nREVG\n",
                "base64": True,
            },
            "\x00": {"content": "old format text"},
        },
    )
    first, second, third = parse_inbound(event).attachments
    assert (first.filename, first.content_type) == ("name.txt", "application/octet-stream")
    assert first.content == "caf\u00e9\n".encode()
    # Line breaks inside base64 are tolerated; the key stands in for a missing name.
    assert (second.filename, second.content) == ("nameless", b"ABCDEF")
    assert second.content_type == long_type[:255]
    # Nothing usable as a name: numbered fallback; no flag and no MIME part: UTF-8 text.
    assert (third.filename, third.content) == ("attachment-3", b"old format text")


def test_text_entry_prefers_the_original_mime_bytes() -> None:
    # A Latin-1 text file: Mandrill hands over decoded text (base64 false), the MIME part
    # holds the bytes the sender attached.
    original = "K\u00f6ln\n".encode("latin-1")
    message = EmailMessage()
    message["From"] = "a@example.com"
    message.set_content("body\n")
    message.add_attachment(original, maintype="text", subtype="plain", filename="city.txt")
    event = inbound_event(
        message.as_bytes().decode("utf-8"),
        attachments={
            "city.txt": {
                "name": "city.txt",
                "type": "text/plain",
                "content": "K\u00f6ln\n",
                "base64": False,
            }
        },
    )
    (attachment,) = parse_inbound(event).attachments
    assert attachment.content == original
    assert attachment.sha256 == sha(original)


# --- large base64 parts, decoded in pieces ------------------------------------------


def _stdlib_payload(payload: str) -> bytes:
    raw = b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    part = BytesParser(policy=policy.default).parsebytes(raw + payload.encode("ascii"))
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data


def test_base64_in_pieces_gives_what_get_payload_gives() -> None:
    rng = random.Random(10)
    decoded_in_pieces = 0
    for _ in range(2000):
        data = rng.randbytes(rng.randint(0, 200))
        text = base64.b64encode(data).decode("ascii")
        width = rng.choice([4, 8, 60, 76, 77, 1000])
        lines = [text[i : i + width] for i in range(0, len(text), width)]
        payload = rng.choice(["\n", "\r\n"]).join(lines) + rng.choice(["", "\n", "\r\n"])
        if rng.random() < 0.3:  # damage it: stray characters, padding inside, cut short
            spot = rng.randint(0, len(payload))
            payload = payload[:spot] + rng.choice(["=", " ", "*", "A", "\r", "é"]) + payload[spot:]
        got = decode_base64_lines(payload, piece_chars=rng.choice([1, 5, 16, 64]))
        if got is not None:
            decoded_in_pieces += 1
            assert got == _stdlib_payload(payload), payload
    assert decoded_in_pieces > 1000  # the common shapes do take the piecewise path


def test_a_large_base64_attachment_is_decoded_as_before() -> None:
    content = bytes(range(256)) * 8000  # 2 MB: above the piecewise threshold
    message = EmailMessage()
    message.set_content("body")
    message.add_attachment(content, maintype="application", subtype="octet-stream")
    raw = message.as_bytes()
    attachment = list(BytesParser(policy=policy.default).parsebytes(raw).walk())[-1]
    payload = attachment.get_payload()
    assert isinstance(payload, str)
    assert decode_base64_lines(payload) == content  # the piecewise path, not a fallback
    event = inbound_event(raw.decode("ascii"))
    assert parse_inbound(event).attachments[0].content == content


def test_the_header_memo_keeps_no_long_header_between_emails() -> None:
    # The parser remembers recent header parses across emails; a header's name can be as
    # long as the header limit, so a long name must not stay behind with its email.
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(30):
            raw = f"From: a@example.org\r\nX-{'n' * 100_000}{i}: v\r\n\r\nbody\r\n"
            parse_inbound({"event": "inbound", "msg": {"raw_msg": raw}})
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, kept  # the 30 names are 3 MB


# --------------------------------------------------------------------------- charsets


def charset_raw(charset: str, body: bytes, subject: str = "hi") -> str:
    encoded = base64.b64encode(body).decode("ascii")
    return (
        f"From: a@example.com\nTo: b@example.com\nSubject: {subject}\nMIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset={charset}\n"
        f"Content-Transfer-Encoding: base64\n\n{encoded}\n"
    )


@pytest.mark.parametrize(
    ("charset", "body", "text"),
    [
        ("iso-8859-1", "K\u00f6ln".encode("latin-1"), "K\u00f6ln"),
        ("windows-1251", "\u041c\u0438\u0440".encode("cp1251"), "\u041c\u0438\u0440"),
        ("koi8-r", "\u041c\u0438\u0440".encode("koi8-r"), "\u041c\u0438\u0440"),
        ("shift_jis", "\u65e5\u672c".encode("shift_jis"), "\u65e5\u672c"),
        ("iso-2022-jp", "\u65e5\u672c".encode("iso-2022-jp"), "\u65e5\u672c"),
        ("gb18030", "\u4e2d\u6587".encode("gb18030"), "\u4e2d\u6587"),
        ("big5", "\u4e2d\u6587".encode("big5"), "\u4e2d\u6587"),
        ("euc-kr", "\ud55c\uad6d".encode("euc-kr"), "\ud55c\uad6d"),
        ("x-no-such-charset", b"caf\xc3\xa9", "caf\u00e9"),
    ],
)
def test_mail_charsets_decode_with_their_codec(charset: str, body: bytes, text: str) -> None:
    result = parse_inbound(inbound_event(charset_raw(charset, body), text=None))
    assert result.text_body == text
    assert result.charset_refused is False


@pytest.mark.parametrize(
    ("charset", "body", "text"),
    [
        # Decoded by its codec this would be "xa\u0080" (after a quadratic decode).
        ("punycode", b"x-aaa", "x-aaa"),
        ("utf-7", b"+AGE-", "+AGE-"),
        ("unicode_escape", b"\\u0041\\x00", "\\u0041\\x00"),
        ("raw-unicode-escape", b"\\u0041", "\\u0041"),
        ("idna", b"xn--caf-dma", "xn--caf-dma"),
        # A text codec's alias padded with what the codec lookup drops.
        ("--punycode--", b"x-aaa", "x-aaa"),
        # Bytes-to-bytes codecs are not text at all.
        ("base64", b"aGk=", "aGk="),
        ("zlib", b"x\x9c", "x\ufffd"),
    ],
)
def test_a_refused_charset_is_read_as_utf8_and_flagged(
    charset: str, body: bytes, text: str
) -> None:
    result = parse_inbound(inbound_event(charset_raw(charset, body), text=None))
    assert result.text_body == text
    assert result.charset_refused is True


def test_a_refused_charset_in_an_encoded_word_never_reaches_its_codec() -> None:
    subject = "=?punycode?q?x-aaa?= and =?utf-8?q?caf=C3=A9?="
    result = parse_inbound(inbound_event(charset_raw("utf-8", b"hi", subject=subject)))
    # The refused word is read as unknown 8-bit (its ASCII as it is); the other is decoded.
    assert result.subject == "x-aaa and caf\u00e9"
    assert ("Subject", "x-aaa and caf\u00e9") in result.headers
    assert result.charset_refused is True


def test_a_refused_charset_in_a_parameter_neither_fails_nor_decodes() -> None:
    # The policy's parameter parser decodes RFC 2231 values with their charset: with
    # punycode that raised (the whole email failed to parse) and is quadratic.
    raw = (
        "From: a@example.com\nTo: b@example.com\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="B"\n\n'
        "--B\nContent-Type: text/plain; charset*=punycode''x-aaa\n\nhello\n"
        "--B\nContent-Type: application/octet-stream\n"
        "Content-Disposition: attachment; filename*=punycode''x-aaa.bin\n"
        "Content-Transfer-Encoding: base64\n\nAAAA\n--B--\n"
    )
    result = parse_inbound(inbound_event(raw, text=None))
    assert result.text_body == "hello"
    (attachment,) = result.attachments
    assert attachment.filename == "x-aaa.bin"
    assert result.charset_refused is True


def test_mail_without_a_refused_charset_is_not_flagged() -> None:
    assert parsed("inbound.json").charset_refused is False


# --------------------------------------------------------------------------- long headers


def test_a_long_address_list_is_read_whole() -> None:
    # Past the length the policy parses, the older linear parser reads the list.
    recipients = [f"r{number}@example.com" for number in range(2000)]
    raw = SIMPLE_RAW.replace("To: ", "Cc: " + ",\n ".join(recipients) + "\nTo: ", 1)
    assert len(raw) > 32_000
    result = parse_inbound(inbound_event(raw))
    assert [address.address for address in result.cc] == recipients
    cc_value = dict(result.headers)["Cc"]
    assert cc_value.startswith("r0@example.com, r1@example.com") or cc_value.startswith(
        "r0@example.com,r1@example.com"
    )
    assert "r1999@example.com" in cc_value


def test_a_long_subject_of_encoded_words_is_decoded_whole() -> None:
    words = " ".join(["=?utf-8?q?caf=C3=A9?="] * 400)  # 8 KB, past the policy's length
    result = parse_inbound(inbound_event(charset_raw("utf-8", b"hi", subject=words)))
    # Adjacent encoded words join without the blanks between them (RFC 2047 6.2).
    assert result.subject == "caf\u00e9" * 400
    assert dict(result.headers)["Subject"] == "caf\u00e9" * 400


def test_many_long_headers_are_kept_undecoded_past_the_budget() -> None:
    # Shortest first: the short Subject is decoded even behind 64 KB of long headers.
    long_headers = "".join(f"X-Long-{n}: " + "w " * 2000 + "\n" for n in range(16))
    raw = long_headers + charset_raw("utf-8", b"hi", subject="=?utf-8?q?caf=C3=A9?=")
    result = parse_inbound(inbound_event(raw))
    headers = dict(result.headers)
    assert headers["Subject"] == "caf\u00e9"
    assert headers["X-Long-15"] == ("w " * 2000).strip()
