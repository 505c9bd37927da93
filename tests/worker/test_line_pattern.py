"""worker.ingest.line_pattern finds what ``re`` finds: the reply-header expression of
mail-parser-reply, tried at line starts only, against ``re``'s own ``findall``, on the
reply corpus and on generated bodies. (Reply text no longer runs that expression:
worker.ingest.derive.reply reads lines itself; tests/worker/test_reply_text.py.)"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

from worker.ingest.line_pattern import LineStartPattern

REPLIES = Path(__file__).resolve().parents[1] / "fixtures" / "replies"

# Lines a quoted reply is made of, in the library's languages, with the decorations
# clients add ("> " quoting, "*bold*" Outlook labels, blank lines).
HEADER_LINES = [
    "On Mon, Jan 5, 2026 at 9:00 AM Support <support@example.com> wrote:",
    "On Mon, Jan 5, 2026 at 9:00 AM Support <support@example.com>",
    "wrote:",
    "Am 05.01.2026 um 09:00 schrieb Support <support@example.com>:",
    "Le 5 janv. 2026 à 09:00, Support <support@example.com> a écrit :",
    "El lun, 5 ene 2026 a las 9:00, Support (<support@example.com>) escribió:",
    "Il giorno lun 5 gen 2026 alle ore 09:00 Support ha scritto:",
    "Op ma 5 jan. 2026 om 09:00 schreef Support <support@example.com>:",
    "Den mån 5 jan. 2026 kl 09:00 skrev Support <support@example.com>:",
    "Dnia 5 stycznia 2026 09:00 Support napisał(a):",
    "2026年1月5日(月) 9:00 Support <support@example.com>:",
    "2026年1月5日 09:00，Support 写道：",
    "2026년 1월 5일 (월) 오전 9:00, Support님이 작성하였습니다:",
    "From: Support <support@example.com>",
    "Sent: Monday, January 5, 2026 9:00 AM",
    "To: Ana <ana@customer.example>",
    "Subject: RE: Help",
    "*From:* Support",
    "*Sent:* Monday",
    "Von: Support",
    "Gesendet: Montag",
    "De : Support",
    "Envoyé : lundi",
    "Från: Support",
    "Skickat: måndag",
    "发件人: Support",
    "发送时间: 2026年1月5日",
    "-----Original Message-----",
    "----- Original Message -----",
    "-----Oprindelig meddelelse-----",
]
TEXT_LINES = [
    "Thanks, that works for me.",
    "Can we move the call to Friday?",
    "Best regards,",
    "Ana",
    "-- ",
    "Sent from my iPhone",
    "The invoice is attached. On second thought, wrote: nothing.",
    "",
    "   ",
]
PREFIXES = ["", "", "", "> ", ">> ", "> > ", " ", "x "]


def library_header_pattern() -> re.Pattern[str]:
    languages = [code for code in MAIL_LANGUAGES if code != "david"]
    return EmailMessage(text="", languages=languages).HEADER_REGEX


def generated_bodies(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        lines = [
            rng.choice(PREFIXES) + rng.choice(HEADER_LINES if rng.random() < 0.4 else TEXT_LINES)
            for _ in range(rng.randint(0, 30))
        ]
        bodies.append(rng.choice(["\n", "\n\n", "\r\n"]).join(lines))
    return bodies


def corpus() -> list[str]:
    texts = [path.read_text(encoding="utf-8") for path in sorted(REPLIES.glob("*.txt"))]
    return [*texts, "", "\n", "\n\n\n", "On Mon wrote:", *generated_bodies(400, seed=7)]


def test_findall_equals_re_findall_on_the_corpus_and_generated_bodies() -> None:
    pattern = library_header_pattern()
    scanned = LineStartPattern(pattern)
    matched = 0
    for raw in corpus():
        # As given, and as the library normalises it before it searches.
        normalised = "\n".join(line.strip() for line in raw.replace("\r\n", "\n").split("\n"))
        for text in (raw, normalised):
            expected = pattern.findall(text)
            assert scanned.findall(text) == expected, text
        matched += bool(expected)
    assert matched > 100  # the generated bodies do contain headers


def test_groups_are_listed_as_re_lists_them() -> None:
    for source in (r"^a\w*", r"^(a)\w*", r"^(a)(b)?\w*", r"(?:^|\n)(x)"):
        pattern = re.compile(source, re.MULTILINE)
        text = "abc\nab\nxa\nzab\n\nx\nabx"
        assert LineStartPattern(pattern).findall(text) == pattern.findall(text)


def test_a_pattern_that_matches_empty_falls_back_to_re() -> None:
    pattern = re.compile(r"^a*", re.MULTILINE)
    assert LineStartPattern(pattern).findall("aa\nb\na") == pattern.findall("aa\nb\na")


def test_a_pattern_without_multiline_is_refused() -> None:
    with pytest.raises(ValueError, match="MULTILINE"):
        LineStartPattern(re.compile("^a"))
