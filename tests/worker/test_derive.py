"""Tests for worker.ingest.derive: threading, mailbox hash, reply text, auto-submitted, sniffing.

Pure tests: nothing is started. Reply samples are the libraries' own public test corpora
(tests/fixtures/replies/README.md says where each comes from); emails are built with the
stdlib and parsed by worker.ingest.parsing, as the worker does.
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from worker.ingest.derive import (
    conversation_id,
    derive_email,
    mailbox_hash,
    normalize_message_id,
    reply_text,
    sniff,
    sniff_attachment,
)
from worker.ingest.parsing import ParsedEmail, parse_inbound

REPLIES = Path(__file__).resolve().parents[1] / "fixtures" / "replies"
HANDOFF = Path(__file__).resolve().parents[1] / "fixtures" / "handoff"


def inbound(message: EmailMessage, *, recipient: str = "inbox@example.com") -> ParsedEmail:
    event: dict[str, Any] = {
        "event": "inbound",
        "ts": 1700000000,
        "msg": {"raw_msg": message.as_string(), "email": recipient},
    }
    return parse_inbound(event)


def message(headers: dict[str, str], body: str = "hello\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.org>"
    msg["To"] = "inbox@example.com"
    msg["Subject"] = "hi"
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(body)
    return msg


# --------------------------------------------------------------------------- threading


def test_conversation_id_is_the_first_reference() -> None:
    assert conversation_id("<c@x.org>", "<b@x.org>", ("<root@X.ORG>", "<b@x.org>")) == "root@x.org"


def test_conversation_id_falls_back_to_in_reply_to_then_own_id() -> None:
    assert conversation_id("<c@x.org>", "<Parent@Mail.X.org>", ()) == "Parent@mail.x.org"
    assert conversation_id("<Own@x.org>", None, ()) == "Own@x.org"
    assert conversation_id(None, None, ()) is None


def test_normalize_message_id_keeps_the_local_part_case() -> None:
    assert normalize_message_id("  <AbC.1@EXAMPLE.Com> ") == "AbC.1@example.com"
    assert normalize_message_id("<>") is None
    assert normalize_message_id("no-brackets@Host") == "no-brackets@host"


def test_a_thread_shares_its_root() -> None:
    root = inbound(message({"Message-ID": "<root@example.org>"}))
    reply = inbound(
        message(
            {
                "Message-ID": "<r1@example.org>",
                "In-Reply-To": "<root@example.org>",
                "References": "<root@example.org>",
            }
        )
    )
    # A client that trimmed References to the parent only still threads through In-Reply-To.
    second = inbound(
        message(
            {
                "Message-ID": "<r2@other.example>",
                "In-Reply-To": "<r1@example.org>",
                "References": "<root@example.org> <r1@example.org>",
            }
        )
    )
    ids = {derive_email(e).conversation_id for e in (root, reply, second)}
    assert ids == {"root@example.org"}


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ("inbox+ticket-42@example.com", "ticket-42"),
        ("Inbox+A+b@example.com", "A+b"),
        ("inbox@example.com", None),
        ("inbox+@example.com", None),
        (None, None),
    ],
)
def test_mailbox_hash(recipient: str | None, expected: str | None) -> None:
    assert mailbox_hash(recipient) == expected


# --------------------------------------------------------------------------- reply text

# (fixture, text that is the reply, text of the quoted history that must be gone)
PLAIN_REPLIES = [
    ("gmail_plain.txt", "This is a test for inbox replying to a github message.", "lazy"),
    ("outlook_plain.txt", "Outlook email reply with a team mention", "Should the team mention"),
    ("german_plain.txt", "This is a reply with German quote", "Hello this is a test"),
    ("swedish_plain.txt", "Ursäkta mitt sena svar!", "Jag har försökt"),
]
HTML_REPLIES = [
    ("gmail.html", "bar", "This is the reply"),
    ("apple_mail.html", "Bar", "important"),
]


@pytest.mark.parametrize(("name", "kept", "quoted"), PLAIN_REPLIES)
def test_reply_text_of_plain_replies_drops_the_quote(name: str, kept: str, quoted: str) -> None:
    body = (REPLIES / name).read_text(encoding="utf-8")
    assert quoted in body  # the fixture does hold the history
    text = reply_text(body, None)
    assert text is not None
    assert kept in text
    assert quoted not in text
    for header_word in ("wrote:", "schrieb", "skrev"):
        assert header_word not in text


@pytest.mark.parametrize(("name", "kept", "quoted"), HTML_REPLIES)
def test_reply_text_of_html_only_replies_drops_the_quote(name: str, kept: str, quoted: str) -> None:
    html = (REPLIES / name).read_text(encoding="utf-8")
    text = reply_text(None, html)
    assert text is not None
    assert kept in text
    assert quoted not in text
    assert "wrote:" not in text
    assert "<" not in text  # text, not markup


def test_reply_text_keeps_an_unquoted_email_whole_and_none_without_body() -> None:
    assert reply_text("Just a note.\nSecond line.\n", None) == "Just a note.\nSecond line."
    assert reply_text(None, None) is None
    assert reply_text("   ", None) is None


def test_attributions_are_looked_for_in_lines_of_up_to_400_characters() -> None:
    # An attribution is a line or three; longer ones are not tried (reply_lines bounds
    # each test): such an "attribution" stays in the reply text, its quote does not.
    for name_length, cut in ((100, True), (300, True), (400, False)):
        header = f"On Mon, Jan 5, 2026 at 9:00 AM {'n' * name_length} <a@example.com> wrote:"
        body = f"New text.\n\n{header}\n> old text\n"
        expected = "New text." if cut else f"New text.\n\n{header}"  # "> " lines go
        assert reply_text(body, None) == expected, name_length


def test_reply_header_found_in_a_wrapped_attribution_and_after_blank_runs() -> None:
    body = (
        "New text.\n" + "\n" * 5000 + "On Mon, Jan 5, 2026 at 9:00 AM Support\n"
        "<support@example.com> wrote:\n> old text\n"
    )
    assert reply_text(body, None) == "New text."


def test_reply_text_through_the_parser() -> None:
    body = (REPLIES / "gmail_plain.txt").read_text(encoding="utf-8")
    derived = derive_email(inbound(message({"Message-ID": "<a@x.org>"}, body)))
    assert derived.reply_text == "This is a test for inbox replying to a github message."


# --------------------------------------------------------------------------- auto-submitted


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Auto-Submitted": "auto-replied"}, "auto-submitted:auto-replied"),
        ({"Auto-Submitted": "auto-generated; owner-email=x@y"}, "auto-submitted:auto-generated"),
        ({"Precedence": "auto_reply"}, "precedence:auto_reply"),
        ({"X-Autoreply": "yes"}, "x-autoreply"),
        ({"X-Auto-Response-Suppress": "All"}, "x-auto-response-suppress"),
        ({"Return-Path": "<>"}, "return-path:empty"),
    ],
)
def test_out_of_office_signals_are_flagged(headers: dict[str, str], reason: str) -> None:
    derived = derive_email(inbound(message({"Message-ID": "<o@x.org>", **headers})))
    assert derived.auto_submitted is True
    assert derived.auto_submitted_reason == reason
    assert derived.bounced_addresses == ()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Auto-Submitted": "no"},
        {"Precedence": "first-class"},
        {"Return-Path": "<alice@example.org>"},
        {"Precedence": "bulk"},  # how it was sent, not who wrote it: the bulk flag says so
    ],
)
def test_person_written_mail_is_not_flagged(headers: dict[str, str]) -> None:
    derived = derive_email(inbound(message({"Message-ID": "<p@x.org>", **headers})))
    assert derived.auto_submitted is False
    assert derived.auto_submitted_reason is None


def raw_inbound(name: str) -> ParsedEmail:
    raw = (HANDOFF / name).read_text(encoding="utf-8")
    event = {"event": "inbound", "ts": 1700000000, "msg": {"raw_msg": raw, "email": "inbox@x.com"}}
    return parse_inbound(event)


def test_a_dsn_bounce_is_flagged_with_its_bounced_address() -> None:
    derived = derive_email(raw_inbound("dsn_postfix.eml"))
    assert derived.auto_submitted is True
    assert derived.auto_submitted_reason == "dsn"
    # The report says Gone@Example.NET: the domain is lower-cased, the local part kept.
    assert derived.bounced_addresses == ("Gone@example.net",)


QMAIL_BOUNCE = """Hi. This is the qmail-send program at mx.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<gone@example.net>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Subject: hi

hello
"""


@pytest.mark.parametrize(
    "sender", ["Mail Delivery System <MAILER-DAEMON@mx.example.org>", "postmaster@mx.example.org"]
)
def test_a_plain_text_bounce_is_recognised_by_its_sender(sender: str) -> None:
    # No multipart/report and no empty Return-Path: only the From address says "bounce".
    bounce = message({"Message-ID": "<q@mx.example.org>"}, QMAIL_BOUNCE)
    bounce.replace_header("From", sender)
    derived = derive_email(inbound(bounce))
    assert (derived.auto_submitted, derived.auto_submitted_reason) == (True, "dsn")
    assert derived.bounced_addresses == ("gone@example.net",)
    person = derive_email(inbound(message({"Message-ID": "<p2@x.org>"}, QMAIL_BOUNCE)))
    assert (person.auto_submitted, person.bounced_addresses) == (False, ())


# --------------------------------------------------------------------------- attachments

PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 32
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 64


@pytest.mark.parametrize(
    ("content", "declared", "sniffed", "mismatch"),
    [
        (PDF, "application/pdf", "application/pdf", False),
        (PNG, "image/png", "image/png", False),
        (EXE, "application/pdf", "application/x-msdownload", True),
        (EXE, "application/x-msdownload", "application/x-msdownload", False),
        (PDF, "image/jpeg", "application/pdf", True),
        (PNG, "application/pdf", "image/png", True),
        (b"just some words\n", "text/plain", None, False),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "image/jpeg", "application/x-executable", True),
    ],
)
def test_sniffed_type_and_mismatch(
    content: bytes, declared: str, sniffed: str | None, mismatch: bool
) -> None:
    result = sniff(content, declared)
    assert result.sniffed_type == sniffed
    assert result.type_mismatch is mismatch


def test_an_attached_exe_named_pdf_is_a_mismatch() -> None:
    msg = message({"Message-ID": "<att@x.org>"})
    msg.add_attachment(EXE, maintype="application", subtype="pdf", filename="invoice.pdf")
    email = inbound(msg)
    (attachment,) = email.attachments
    assert attachment.content_type == "application/pdf"
    result = sniff_attachment(attachment)
    assert result.sniffed_type == "application/x-msdownload"
    assert result.type_mismatch is True


def test_an_exchange_out_of_office_is_flagged() -> None:
    derived = derive_email(raw_inbound("out_of_office_exchange.eml"))
    assert derived.auto_submitted is True
    assert derived.auto_submitted_reason == "auto-submitted:auto-replied"
