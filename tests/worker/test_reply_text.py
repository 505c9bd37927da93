"""Reply text and forwarded text, table-driven: one case per client, language and posting
style (tests/fixtures/replies/table/, README.md there says where each comes from).

A case is an ``@@case name`` line, then sections: ``@@subject`` (optional), ``@@body`` (a
text body) or ``@@html`` (an HTML-only email), ``@@reply`` (the expected reply text) and
``@@forwarded`` (the expected forwarded text, absent for None), ``@@sender`` (the From
display name, optional) and ``@@address`` (the From address, optional). Texts are compared after
whitespace normalisation: each line's trailing spaces and the whole text stripped. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from worker.ingest.derive import reply_parts
from worker.ingest.derive.reply import split_text

TABLE = Path(__file__).resolve().parents[1] / "fixtures" / "replies" / "table"


@dataclass(frozen=True)
class Case:
    name: str
    sections: dict[str, str]


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(TABLE.glob("*.txt")):
        name = ""
        sections: dict[str, list[str]] = {}
        current: list[str] = []
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line.startswith("@@case "):
                if name:
                    cases.append(_case(name, sections))
                name, sections = f"{path.stem}/{line[7:].strip()}", {}
            elif line.startswith("@@"):
                current = sections.setdefault(line[2:].strip(), [])
            else:
                current.append(line)
        if name:
            cases.append(_case(name, sections))
    return cases


def _case(name: str, sections: dict[str, list[str]]) -> Case:
    return Case(name, {key: "\n".join(lines) for key, lines in sections.items()})


def normalise(text: str | None) -> str | None:
    if text is None:
        return None
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


CASES = load_cases()


def test_the_table_is_broad() -> None:
    assert len(CASES) >= 80
    assert sum("html" in case.sections for case in CASES) >= 4
    assert sum("forwarded" in case.sections for case in CASES) >= 8


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_reply_and_forwarded_text(case: Case) -> None:
    subject = case.sections.get("subject", "").strip() or None
    sender = case.sections.get("sender", "").strip() or None
    address = case.sections.get("address", "").strip() or None
    parts = reply_parts(
        case.sections.get("body"), case.sections.get("html"), subject, sender, address
    )
    assert normalise(parts.reply_text) == normalise(case.sections["reply"])
    expected_forward = case.sections.get("forwarded")
    assert normalise(parts.forwarded_text) == normalise(expected_forward)


def test_a_forward_found_by_subject_only_with_a_header_block() -> None:
    body = "Note.\n\nFrom: A <a@x.org>\nSent: Monday\nTo: B\nSubject: x\n\nOld."
    assert split_text(body, forward_subject=True).forwarded_text is not None
    assert split_text(body).forwarded_text is None
    assert split_text(body).reply_text == "Note."


def test_crlf_and_long_lines_are_read() -> None:
    body = "New.\r\n\r\nOn Mon, Jan 5, 2026, Ana <a@x.org> wrote:\r\n> old\r\n" + "x" * 5000
    assert split_text(body).reply_text == "New.\n\n" + "x" * 5000
