"""A timed search for email bodies that cost the parse and derive path super-linear time.

hypothesis generates bodies from a grammar of line fragments (reply-header words of
every language the reply parser knows, quoting, separators, whitespace runs, HTML tags),
each fragment and line repeated so that a body is a few kilobytes, and runs each email
through what the ingest task runs (``loadkit.complexity.run_path``). It steers towards
the bodies that cost the most CPU time per byte (``hypothesis.target``), flags every
body over 20 microseconds per byte, and keeps the five worst. Each of those is then
timed at 8 times its size: the ratio says whether its cost grows faster than its
length. It searches for 3 minutes (30 s with ``--quick``); not in the default run, and
not a test (its results differ from run to run). A shape it finds becomes a family of
:mod:`loadkit.complexity`, and so a case of ``tests/worker/test_complexity.py``.
"""

from __future__ import annotations

import contextlib
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings, target
from hypothesis import strategies as st

from loadkit.complexity import cpu_seconds, html, inbound_event, plain, run_path

MINUTES = 3.0
THRESHOLD = 20.0  # microseconds per byte: a body over it is flagged
WORST = 5  # bodies kept and timed at 8x

# Words and marks that the reply parser's expressions look for, and what they skip over.
TEXT_FRAGMENTS = [
    "On ", "Am ", "Den ", "Le ", "El ", "Il ", "Op ", "Dnia ", "Dne ", "Von: ", "From: ",
    "Sent: ", "To: ", "Subject: ", "Cc: ", "De : ", "Från: ", "发件人: ", "*From:* ",
    "wrote:", "schrieb ", "skrev ", "skrev:", "a écrit ", "escribió:", " escribió:",
    "ha scritto:", "schreef:", "napisał(a):", "napsal(a):", "nadesłał:", "写道：",
    "님이 작성하였습니다:", "2026年1月5日", "(月) 9:00", "2026년 1월 5일 ", "<a@b.example>",
    "-----Original Message-----", "-----Oprindelig meddelelse-----", "_" * 32, "-" * 32,
    "-- ", "- ", "--", "> ", ">", "*", " ", "  ", "\t", "\u00a0", "\u200b", ".", ",", ":",
    "a", "a ", "word ", "1", "jan ", "Disclaimer:", "CAUTION:", "mail ", "Best regards",
    "Sent from my ", "Thanks,", "=?utf-8?q?a?=", "\r",
]  # fmt: skip
HTML_FRAGMENTS = [
    "<div>", "</div>", "<blockquote>", "</blockquote>", "<p>", "<br>", "<table>", "<tr>",
    "<td>", "</td>", "<b>", "<i>", "&nbsp;", "&amp;", "<!--", "-->", "<![CDATA[",
    '<div class="gmail_quote">', '<blockquote type="cite">', "<pre>", "<span>", "<li>",
    "<ul>", "<a href=x>", "On a wrote:", "text ", " ", "\n", "<", ">", "&",
]  # fmt: skip
TARGET_BYTES = 8 * 1024


def _line(fragments: list[str]) -> st.SearchStrategy[str]:
    piece = st.tuples(st.sampled_from(fragments), st.integers(1, 64)).map(lambda p: p[0] * p[1])
    return st.lists(piece, min_size=1, max_size=8).map("".join)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, str]:
    """(kind, body): a block of lines repeated to about TARGET_BYTES."""
    kind = draw(st.sampled_from(["text", "text", "html"]))
    fragments = HTML_FRAGMENTS if kind == "html" else TEXT_FRAGMENTS
    lines = draw(st.lists(_line(fragments), min_size=1, max_size=6))
    newlines = draw(st.sampled_from(["\n", "\r\n", "\n\n", "", " \n"]))
    block = newlines.join(lines) + newlines
    return kind, block * max(1, TARGET_BYTES // max(len(block), 1))


def email_of(kind: str, body: str) -> str:
    return html(body) if kind == "html" else plain(body)


@dataclass(order=True)
class Found:
    micros_per_byte: float
    kind: str = field(compare=False)
    body: str = field(compare=False, repr=False)


def search(
    minutes: float, threshold: float, worst: int, seed_value: int | None
) -> tuple[int, int, list[Found]]:
    deadline = time.monotonic() + minutes * 60
    kept: list[Found] = []  # a heap of the worst bodies
    flagged = 0
    tried = 0

    @settings(
        max_examples=10**9,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.target],
        suppress_health_check=list(HealthCheck),
    )
    @given(bodies())
    def measure(case: tuple[str, str]) -> None:
        nonlocal flagged, tried
        if time.monotonic() > deadline:
            raise _TimeIsUp  # stops hypothesis (no shrink phase: it is not a failure)
        kind, body = case
        event = inbound_event(email_of(kind, body))
        size = len(event["msg"]["raw_msg"].encode())
        spent = cpu_seconds(event, repeats=1)
        micros = spent / size * 1e6
        tried += 1
        target(micros, label="microseconds per byte")
        if micros > threshold:
            flagged += 1
        found = Found(micros, kind, body)
        if len(kept) < worst:
            heapq.heappush(kept, found)
        elif found > kept[0]:
            heapq.heapreplace(kept, found)

    if seed_value is not None:
        measure = seed(seed_value)(measure)
    with contextlib.suppress(_TimeIsUp):
        measure()
    return tried, flagged, sorted(kept, reverse=True)


class _TimeIsUp(Exception):
    pass


def growth(found: Found) -> tuple[float, float, float]:
    """CPU seconds at the body's size and at 8 times it, and their ratio."""
    small = cpu_seconds(inbound_event(email_of(found.kind, found.body)), repeats=3)
    large_event = inbound_event(email_of(found.kind, found.body * 8))
    run_path(large_event)
    large = cpu_seconds(large_event, repeats=2)
    return small, large, large / max(small, 1e-4)


def run(
    *, quick: bool, seed_value: int | None = None, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    minutes = 0.5 if quick else MINUTES
    progress(f"  fuzz: searching for {minutes:g} minutes")
    tried, flagged, found = search(minutes, THRESHOLD, WORST, seed_value)
    worst = []
    for item in found:
        small, large, ratio = growth(item)
        worst.append(
            {
                "kind": item.kind,
                "micros_per_byte": item.micros_per_byte,
                "seconds": small,
                "seconds_at_8x": large,
                "ratio": ratio,
                "body_starts": item.body[:160],
            }
        )
    return {
        "minutes": minutes,
        "target_bytes": TARGET_BYTES,
        "threshold_us_per_byte": THRESHOLD,
        "tried": tried,
        "flagged": flagged,
        "worst": worst,
    }


def section(data: dict[str, Any]) -> tuple[list[str], list[tuple[str, bool]]]:
    lines = [
        f"### Fuzzing the parse and derive path: {data['tried']} bodies of about "
        f"{data['target_bytes']} bytes in {data['minutes']:g} minutes, {data['flagged']} over "
        f"{data['threshold_us_per_byte']:g} us a byte",
        "",
        "| # | kind | us/byte | CPU s | at 8x | ratio | body starts |",
        "|---|---|---|---|---|---|---|",
    ]
    for number, item in enumerate(data["worst"], start=1):
        start = repr(item["body_starts"][:60]).replace("|", "\\|")
        lines.append(
            f"| {number} | {item['kind']} | {item['micros_per_byte']:.2f} | "
            f"{item['seconds']:.4f} | {item['seconds_at_8x']:.4f} | {item['ratio']:.1f} | "
            f"`{start}` |"
        )
    checks = [
        (
            f"fuzzing: no body over {data['threshold_us_per_byte']:g} us a byte "
            f"(got {data['flagged']})",
            data["flagged"] == 0,
        )
    ]
    return lines, checks
