"""Scoring: derive each message's fields and compare them with its labels.

Fields are read with ``getattr``: a field that :class:`~worker.ingest.derive.Derived` does
not have (yet) scores as "n/a" rather than failing, so the same corpus measures the
derivation before and after a field is added.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from evaluation.corpus import Case, Corpus, Thread
from worker.ingest.derive import derive_email, normalize_message_id
from worker.ingest.parsing import ParsedEmail, parse_inbound

_BLANK_RUN: Final = re.compile(r"\n{3,}")
_MISSING: Final = object()


@dataclass(slots=True)
class Tally:
    """One row of the table: how many cases a metric had and how many came out right.
    ``right`` is None when the field does not exist in Derived (reported "n/a")."""

    corpus: str
    metric: str
    cases: int = 0
    right: int | None = 0
    misses: list[dict[str, Any]] = field(default_factory=list)

    def add(self, ok: bool | None, file: str, expected: Any = None, got: Any = None) -> None:
        self.cases += 1
        if ok is None or self.right is None:
            self.right = None
            return
        if ok:
            self.right += 1
        else:
            self.misses.append({"file": file, "expected": expected, "got": got})

    @property
    def percent(self) -> float | None:
        if self.right is None or self.cases == 0:
            return None
        return 100.0 * self.right / self.cases


@dataclass(frozen=True, slots=True)
class Outcome:
    """What derivation gave for one message (or why it gave nothing)."""

    derived: Any
    parsed: ParsedEmail | None
    error: str | None = None


def normalise_text(text: str | None) -> str | None:
    """Whitespace-insensitive form for exact text comparison: trailing spaces stripped per
    line, three or more line breaks collapsed to one blank line, the whole text stripped."""
    if text is None:
        return None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    joined = "\n".join(line.rstrip() for line in lines)
    return _BLANK_RUN.sub("\n\n", joined).strip()


def derive_raw(raw: str) -> Outcome:
    """Parse a raw RFC 5322 message as one inbound event and derive its fields."""
    try:
        parsed = parse_inbound({"event": "inbound", "ts": 0, "msg": {"raw_msg": raw}})
        return Outcome(derived=derive_email(parsed), parsed=parsed)
    except Exception as exc:  # a message the parser refuses is a miss, not a crash
        return Outcome(derived=None, parsed=None, error=f"{type(exc).__name__}: {exc}")


def _field(outcome: Outcome, name: str) -> Any:
    if outcome.derived is None:
        return None
    return getattr(outcome.derived, name, _MISSING)


def _addresses(values: Iterable[str] | None) -> set[str]:
    # Addresses compare case-insensitively (flufl.bounce keeps a domain's case as sent).
    return {value.strip().lower() for value in values or ()}


def _text_check(expected: Any, got: Any) -> bool:
    return normalise_text(expected) == normalise_text(got)


def _set_check(expected: Any, got: Any) -> bool:
    return _addresses(expected) == _addresses(got)


def _equal_check(expected: Any, got: Any) -> bool:
    return bool(expected == got)


_CHECKS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "reply_text": _text_check,
    "forwarded_text": _text_check,
    "bounced_addresses": _set_check,
}


def metric_name(case: Case, name: str) -> str:
    """The table row a label counts in: flags split by expected value and kind of mail."""
    if name in ("auto_submitted", "bulk"):
        expected = case.labels[name]
        if expected:
            return f"{name}=true (recall)"
        kind = "list mail" if case.category == "list" else "person mail"
        return f"{name}=false on {kind}"
    if name in ("reply_text", "forwarded_text"):
        return f"{name} exact"
    if name == "bounced_addresses":
        return "bounced_addresses set"
    return f"{name} equal"


def score_corpus(corpus: Corpus) -> list[Tally]:
    """Every metric of one corpus, in a stable order."""
    tallies: dict[str, Tally] = {}
    outcomes: dict[str, Outcome] = {}
    for case in corpus.cases:
        outcome = outcomes.setdefault(case.file, derive_raw(corpus.raw(case.file)))
        for name, expected in case.labels.items():
            metric = metric_name(case, name)
            tally = tallies.setdefault(metric, Tally(corpus.name, metric))
            got = _field(outcome, name)
            if got is _MISSING:
                tally.add(None, case.file)
                continue
            check = _CHECKS.get(name, _equal_check)
            shown = outcome.error if outcome.error else got
            tally.add(outcome.error is None and check(expected, got), case.file, expected, shown)
    # Hygiene flags (hidden text, invisible characters, parts that disagree) on the mail
    # labelled as written by people (auto_submitted false): none is expected, so every
    # flag is a false positive. Each file once.
    seen: set[str] = set()
    for case in corpus.cases:
        if case.labels.get("auto_submitted", True) is not False or case.file in seen:
            continue
        seen.add(case.file)
        kind = "list mail" if case.category == "list" else "person mail"
        tally = tallies.setdefault(
            f"hygiene_flags=[] on {kind}", Tally(corpus.name, f"hygiene_flags=[] on {kind}")
        )
        outcome = outcomes.setdefault(case.file, derive_raw(corpus.raw(case.file)))
        flags = _field(outcome, "hygiene_flags")
        tally.add(outcome.error is None and not flags, case.file, [], flags)
    _score_auto_replies(corpus, tallies, outcomes)
    for thread in corpus.threads:
        # Threads whose replies carry no threading header are not "modern threads" (the
        # acceptance figure); they get rows of their own so both figures stay visible.
        kind = "threads" if thread.threading_headers else "threads without threading headers"
        for how, joiner in (
            ("stateless", stateless_conversations),
            ("stored parents", simulate_stored_parent_lookup),
        ):
            metric = f"{kind} joined ({how})"
            tally = tallies.setdefault(metric, Tally(corpus.name, metric))
            ids = joiner(corpus, thread, outcomes)
            tally.add(len(set(ids)) == 1 and None not in ids, thread.name, thread.files, ids)
    return [tallies[key] for key in sorted(tallies)]


def _score_auto_replies(
    corpus: Corpus, tallies: dict[str, Tally], outcomes: dict[str, Outcome]
) -> None:
    """The auto-replies (out-of-office, vacation, challenge-response) again in a row of
    their own: inside ``auto_submitted=true (recall)`` the bounces outnumber them twenty
    to one, and the acceptance figure "auto-replies flagged" is about them alone."""
    metric = "auto_submitted=true on auto-replies"
    for case in corpus.cases:
        if case.category != "auto_reply" or case.labels.get("auto_submitted") is not True:
            continue
        tally = tallies.setdefault(metric, Tally(corpus.name, metric))
        outcome = outcomes.setdefault(case.file, derive_raw(corpus.raw(case.file)))
        got = _field(outcome, "auto_submitted")
        tally.add(outcome.error is None and got is True, case.file, True, got)


def _thread_outcomes(corpus: Corpus, thread: Thread, outcomes: dict[str, Outcome]) -> list[Outcome]:
    return [outcomes.setdefault(f, derive_raw(corpus.raw(f))) for f in thread.files]


def stateless_conversations(
    corpus: Corpus, thread: Thread, outcomes: dict[str, Outcome]
) -> list[str | None]:
    """Each message's conversation_id as the stateless derivation gives it."""
    return [_field(o, "conversation_id") for o in _thread_outcomes(corpus, thread, outcomes)]


def simulate_stored_parent_lookup(
    corpus: Corpus, thread: Thread, outcomes: dict[str, Outcome]
) -> list[str | None]:
    """A SIMULATION of the ingest-time join (the real one is a lookup in storage SQL):
    messages are taken in the thread's order, a dict maps each stored Message-ID to the
    conversation_id it was stored with, and a message whose In-Reply-To or References names
    a stored message takes that parent's conversation_id (In-Reply-To first, then the
    nearest References id); otherwise it keeps its own derived one."""
    stored: dict[str, str | None] = {}
    result: list[str | None] = []
    for outcome in _thread_outcomes(corpus, thread, outcomes):
        parsed = outcome.parsed
        own = _field(outcome, "conversation_id")
        if parsed is None:
            result.append(None)
            continue
        parents = [parsed.in_reply_to, *reversed(tuple(parsed.references))]
        keys = [normalize_message_id(parent) for parent in parents]
        chosen = next((stored[key] for key in keys if key is not None and key in stored), own)
        message_key = normalize_message_id(parsed.message_id)
        if message_key is not None:
            stored.setdefault(message_key, chosen)
        result.append(chosen)
    return result
