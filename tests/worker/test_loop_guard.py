"""Tests for worker.ingest.derive.loop_guard and bounces: who wrote an email (auto_submitted),
how it was sent (bulk), and which addresses a bounce reports.

Pure tests: emails are built with the stdlib and parsed by worker.ingest.parsing, as the
worker does; nothing is started.
"""

from __future__ import annotations

from email import message_from_string
from email.message import EmailMessage
from email.policy import default

import pytest

from tests.worker.test_derive import inbound, message, raw_inbound
from worker.ingest.derive import derive_email

# --------------------------------------------------------------------------- bulk


def list_reply() -> EmailMessage:
    """A person's answer on a mailing list, with the headers Mailman adds."""
    return message(
        {
            "Message-ID": "<reply-7@example.org>",
            "In-Reply-To": "<question@example.net>",
            "Precedence": "list",
            "List-Id": "Users of the thing <users.lists.example.org>",
            "List-Post": "<mailto:users@lists.example.org>",
            "List-Unsubscribe": "<mailto:users-leave@lists.example.org>",
        },
        "Have you tried turning it off and on again?\n",
    )


def test_a_person_writing_through_a_list_is_bulk_but_not_auto_submitted() -> None:
    derived = derive_email(inbound(list_reply()))
    assert (derived.bulk, derived.bulk_reason) == (True, "precedence:list")
    assert (derived.auto_submitted, derived.auto_submitted_reason) == (False, None)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Precedence": "bulk"}, "precedence:bulk"),
        ({"Precedence": "Junk"}, "precedence:junk"),
        ({"List-Id": "<users.lists.example.org>"}, "list-id"),
        ({"List-Post": "<mailto:users@lists.example.org>"}, "list-post"),
        ({"List-Unsubscribe": "<https://news.example.com/u/1>"}, "list-unsubscribe"),
    ],
)
def test_list_and_bulk_headers_make_bulk(headers: dict[str, str], reason: str) -> None:
    derived = derive_email(inbound(message({"Message-ID": "<b@x.org>", **headers})))
    assert (derived.bulk, derived.bulk_reason) == (True, reason)
    assert derived.auto_submitted is False


@pytest.mark.parametrize(
    "headers",
    [{}, {"Precedence": "auto_reply"}, {"Precedence": "first-class"}, {"List-Id": " "}],
)
def test_one_to_one_mail_is_not_bulk(headers: dict[str, str]) -> None:
    derived = derive_email(inbound(message({"Message-ID": "<n@x.org>", **headers})))
    assert (derived.bulk, derived.bulk_reason) == (False, None)


# --------------------------------------------------------------------------- auto-submitted


def test_an_out_of_office_is_auto_submitted_and_not_bulk() -> None:
    oof = message(
        {"Message-ID": "<oof@x.org>", "Auto-Submitted": "auto-replied"},
        "I am out of the office until Monday.\n",
    )
    derived = derive_email(inbound(oof))
    assert (derived.auto_submitted, derived.auto_submitted_reason) == (
        True,
        "auto-submitted:auto-replied",
    )
    assert derived.bulk is False


@pytest.mark.parametrize(
    ("sender", "reason"),
    [
        ("Mail Delivery System <MAILER-DAEMON@mx.example.org>", "sender:mailer-daemon"),
        ("postmaster@mx.example.org", "sender:postmaster"),
    ],
)
def test_a_daemon_bounce_without_a_parseable_address_is_auto_submitted(
    sender: str, reason: str
) -> None:
    bounce = message(
        {"Message-ID": "<d@mx.example.org>"},
        "Your message could not be delivered. Please contact your administrator.\n",
    )
    bounce.replace_header("From", sender)
    derived = derive_email(inbound(bounce))
    assert (derived.auto_submitted, derived.auto_submitted_reason) == (True, reason)
    assert derived.bounced_addresses == ()


def test_an_empty_from_is_auto_submitted() -> None:
    mail = message({"Message-ID": "<e@x.org>"}, "Mail Error\n")
    mail.replace_header("From", "Jetmail System <>")
    derived = derive_email(inbound(mail))
    assert (derived.auto_submitted, derived.auto_submitted_reason) == (True, "from:empty")


def test_a_bounce_a_list_manager_passes_on_is_found_by_its_precedence() -> None:
    # Mailman forwards a bounce it cannot read to the list's owner: no null sender, no
    # MAILER-DAEMON, only "Precedence: bulk" and the bounce text.
    bounce = message({"Message-ID": "<fw@lists.example.org>", "Precedence": "bulk"}, QMAIL_BOUNCE)
    bounce.replace_header("From", "MDaemon@receive.example.com")
    derived = derive_email(inbound(bounce, recipient="users-owner@lists.example.org"))
    assert (derived.auto_submitted, derived.auto_submitted_reason) == (True, "dsn")
    assert "gone@example.net" in derived.bounced_addresses
    assert derived.bulk is True


def test_a_person_named_like_a_daemon_is_not_flagged() -> None:
    mail = message({"Message-ID": "<pm@x.org>"}, "Thanks for the fix.\n")
    mail.replace_header("From", "Pat Postmaster <pat@example.org>")
    assert derive_email(inbound(mail)).auto_submitted is False


@pytest.mark.parametrize(
    "subject",
    [
        "Automatic reply: invoice 42",
        "AUTO: Ana Lima is out of the office (returning 05/01)",
        "[Automatyczna odpowiedź] test",
        "Out of Office: meeting",
        "Arpus biroja atrasanas automatiska atbilde: subjecting",  # Exchange 2003, lv
        "Automatikus válasz: ajánlat",
        "自动回复: 报价",
    ],
)
def test_an_auto_reply_known_by_its_subject_is_auto_submitted(subject: str) -> None:
    mail = message({"Message-ID": "<s@x.org>"}, "I am away until Monday.\n")
    mail.replace_header("Subject", subject)
    derived = derive_email(inbound(mail))
    assert (derived.auto_submitted, derived.auto_submitted_reason) == (True, "subject:auto-reply")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Precedence", "auto_reply"),
        ("X-Autogenerated", "Reply"),
        ("X-AutoReply-From", "ana@x.org"),
        ("X-Mail-Autoreply", "yes"),
        ("X-FC-MachineGenerated", "true"),
        ("X-POST-MessageClass", "9; Autoresponder"),
        ("Delivered-To", "Autoresponder"),
    ],
)
def test_an_auto_reply_known_by_its_products_header_is_auto_submitted(
    header: str, value: str
) -> None:
    mail = message({"Message-ID": "<v@x.org>", header: value}, "I am away until Monday.\n")
    derived = derive_email(inbound(mail))
    assert (derived.auto_submitted, derived.auto_submitted_reason) == (True, header.lower())


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Autogenerated", "Forward"),  # a person's mail, forwarded by a rule
        ("Delivered-To", "autoresponder-team@x.org"),  # an address, not qmail's marker
        ("X-FC-MachineGenerated", "false"),
        ("X-Mail-Autoreply", ""),
    ],
)
def test_a_products_header_that_does_not_say_auto_reply_is_not_flagged(
    header: str, value: str
) -> None:
    mail = message({"Message-ID": "<n@x.org>", header: value}, "Can we meet?\n")
    assert derive_email(inbound(mail)).auto_submitted is False


@pytest.mark.parametrize(
    "subject",
    ["Out of Office", "Auto Response", "Ana Lima is out of the office."],
)
def test_an_auto_reply_known_by_its_whole_subject_is_auto_submitted(subject: str) -> None:
    mail = message({"Message-ID": "<w@x.org>"}, "I am away until Monday.\n")
    mail.replace_header("Subject", subject)
    derived = derive_email(inbound(mail))
    assert (derived.auto_submitted, derived.auto_submitted_reason) == (True, "subject:auto-reply")


@pytest.mark.parametrize(
    "subject",
    [
        "Out of office next week?",
        "Re: the automatic reply: can we turn it off?",
        "Autumn plans",
        "Is Ana out of the office?",
        "Auto response templates",
        "Re: Ana Lima is out of the office",  # a person answering the notice
        "Fwd: Ana Lima is out of the office.",
    ],
)
def test_a_person_writing_about_auto_replies_is_not_flagged(subject: str) -> None:
    mail = message({"Message-ID": "<p@x.org>"}, "Can we talk about it tomorrow?\n")
    mail.replace_header("Subject", subject)
    assert derive_email(inbound(mail)).auto_submitted is False


def test_a_bounce_known_by_its_subject_is_read_for_failed_addresses() -> None:
    # A gateway's own notice: neither a null sender nor MAILER-DAEMON, only its subject.
    bounce = message({"Message-ID": "<g@gw.example.org>"}, QMAIL_BOUNCE)
    bounce.replace_header("From", "smtp-gateway@gw.example.org")
    bounce.replace_header("Subject", "Mail could not be delivered")
    derived = derive_email(inbound(bounce))
    assert (derived.auto_submitted, derived.auto_submitted_reason) == (True, "dsn")
    assert "gone@example.net" in derived.bounced_addresses


def test_a_person_whose_subject_sounds_like_a_bounce_is_not_flagged() -> None:
    mail = message({"Message-ID": "<q@x.org>"}, "My mail to the bank could not be delivered.\n")
    mail.replace_header("Subject", "Undeliverable mail to the bank?")
    assert derive_email(inbound(mail)).auto_submitted is False


def test_a_bounce_whose_return_path_a_relay_set_to_its_daemon_is_found() -> None:
    bounce = message(
        {"Message-ID": "<rp@gw.example.org>", "Return-Path": "<MAILER-DAEMON@relay.example.org>"},
        QMAIL_BOUNCE,
    )
    bounce.replace_header("From", "imss@gw.example.org")
    derived = derive_email(inbound(bounce))
    assert (derived.auto_submitted, derived.auto_submitted_reason) == (True, "dsn")


REPORT = """From: reports@isp.example
To: inbox@example.com
Subject: report
Message-ID: <r@isp.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type={report_type}; boundary="b"

--b
Content-Type: text/plain

A report about a message to <someone@example.org>.

--b
Content-Type: message/{report_type}

Version: 1
Original-Recipient: rfc822;someone@example.org

--b--
"""


@pytest.mark.parametrize("report_type", ["feedback-report", "disposition-notification"])
def test_spam_complaints_and_read_receipts_are_auto_submitted(report_type: str) -> None:
    raw = REPORT.format(report_type=report_type)
    derived = derive_email(inbound(message_from_string(raw, policy=default)))
    assert (derived.auto_submitted, derived.auto_submitted_reason) == (
        True,
        f"report:{report_type}",
    )
    assert derived.bounced_addresses == ()  # a report, not a bounce: nothing failed


# --------------------------------------------------------------------------- bounced addresses

QMAIL_BOUNCE = """Hi. This is the qmail-send program at mx.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<gone@Example.NET>:
Sorry, no mailbox here by that name. (#5.1.1)

<|/usr/bin/procmail -d bob>:
command failed

</var/spool/mail/bob>:
cannot write

</var/spool/mail/ann@mx.example.org>:
cannot write

<Inbox@Example.com>:
mail loop

<sent-1@example.com>:
unknown

<also@example.net>:
Sorry, no mailbox here by that name. (#5.1.1)

<GONE@example.net>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

From: Inbox <inbox@example.com>
To: gone@example.net, also@example.net
Message-ID: <sent-1@example.com>
Subject: hi

hello
"""


def test_bounced_addresses_are_only_the_failed_recipients() -> None:
    bounce = message({"Message-ID": "<q@mx.example.org>"}, QMAIL_BOUNCE)
    bounce.replace_header("From", "MAILER-DAEMON@mx.example.org")
    bounce.replace_header("To", "Inbox <inbox@example.com>")
    derived = derive_email(inbound(bounce))
    assert derived.auto_submitted_reason == "dsn"
    # Not the bounce's To (our own address, which sent what bounced), in any case; not the
    # returned Message-ID; not a pipe command or a mailbox path; the domain lower-cased, the
    # local part as sent (one spelling per address: the fewest capitals), in order.
    assert derived.bounced_addresses == ("also@example.net", "gone@example.net")


def test_who_wrote_to_themselves_is_still_reported_bounced() -> None:
    # The returned message's From is the failed recipient too (a test sent to oneself
    # through a forwarder): only the bounce's own sender and recipients are left out.
    returned = QMAIL_BOUNCE.replace("From: Inbox <inbox@example.com>", "From: gone@example.net")
    bounce = message({"Message-ID": "<self@mx.example.org>"}, returned)
    bounce.replace_header("From", "MAILER-DAEMON@mx.example.org")
    assert "gone@example.net" in derive_email(inbound(bounce)).bounced_addresses


def test_a_dsn_names_neither_its_sender_nor_the_returned_message() -> None:
    derived = derive_email(raw_inbound("dsn_postfix.eml"))
    assert derived.bounced_addresses == ("Gone@example.net",)
    assert "inbox@example.com" not in derived.bounced_addresses
    assert "sent-1@example.com" not in derived.bounced_addresses
    assert derived.bulk is False
