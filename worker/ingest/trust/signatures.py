"""DKIM and ARC re-verified over the raw message with dkimpy (zlib/BSD licence).

Each DKIM-Signature (up to ``MAX_SIGNATURES``, so the work stays linear in the
message) is verified on its own, and the ARC chain once, with dkimpy's ``dnsfunc``
seam answered by :class:`~worker.ingest.trust.dns.TxtLookup`. dkimpy turns a DNS
timeout into a plain "does not verify", so the look-up's own record of a failure is
what tells ``temperror`` (no fact) from ``fail``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import dkim

from worker.ingest.trust.dns import TxtLookup
from worker.interrupts import INTERRUPTS

MAX_SIGNATURES = 5
MAX_ARC_SETS = 10
REASON_CHARS = 200

Result = Literal["pass", "fail", "temperror", "permerror"]


@dataclass(frozen=True, slots=True)
class SignatureResult:
    domain: str  # d=, lower case ("" when the tag is missing)
    selector: str
    result: Result
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ArcResult:
    result: str  # pass, fail, none, temperror
    sealers: tuple[str, ...] = ()  # d= of each ARC-Seal, from i=1 up
    reason: str = ""


@dataclass
class _Asked:
    """dkimpy's dnsfunc for one verification, remembering whether DNS failed."""

    lookup: TxtLookup
    failed: bool = field(default=False)

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        answer = self.lookup.txt(text)
        if answer.status == "failed":
            self.failed = True
            return None
        return answer.records[0] if answer.records else None


_TAG = re.compile(rb"(?:^|;)\s*([ds])\s*=\s*([^;\s]*)", re.IGNORECASE)


def _tags(value: bytes) -> dict[bytes, bytes]:
    return {m.group(1).lower(): m.group(2) for m in _TAG.finditer(value)}


def _cut(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:REASON_CHARS]


def verify_dkim(raw: bytes, lookup: TxtLookup) -> tuple[SignatureResult, ...]:
    """Every DKIM-Signature's result, topmost first (at most ``MAX_SIGNATURES``)."""
    try:
        message = dkim.DKIM(raw)
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception as exc:  # dkimpy raises its own and stdlib errors on odd input
        return (SignatureResult("", "", "permerror", _cut(exc)),)
    headers = [v for k, v in message.headers if k.lower() == b"dkim-signature"]
    results = []
    for index, value in enumerate(headers[:MAX_SIGNATURES]):
        tags = _tags(value)
        domain = tags.get(b"d", b"").decode("ascii", "replace").lower()
        selector = tags.get(b"s", b"").decode("ascii", "replace")
        asked = _Asked(lookup)
        try:
            valid = message.verify(idx=index, dnsfunc=asked)
        except dkim.ValidationError as exc:  # e.g. the body hash does not match
            results.append(SignatureResult(domain, selector, "fail", _cut(exc)))
            continue
        except INTERRUPTS:
            raise  # a soft time limit must reach the task (worker/interrupts.py)
        except Exception as exc:
            result: Result = "temperror" if asked.failed else "permerror"
            results.append(SignatureResult(domain, selector, result, _cut(exc)))
            continue
        if valid:
            results.append(SignatureResult(domain, selector, "pass"))
        elif asked.failed:
            results.append(SignatureResult(domain, selector, "temperror", "DNS did not answer"))
        else:
            results.append(SignatureResult(domain, selector, "fail", "signature or key"))
    return tuple(results)


def verify_arc(raw: bytes, lookup: TxtLookup) -> ArcResult:
    """The ARC chain's validation (RFC 8617): pass, fail or none (not sealed)."""
    try:
        arc = dkim.ARC(raw)
        count, sets = arc.sorted_arc_headers()
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception as exc:
        return ArcResult("fail", reason=_cut(exc))
    if count == 0:
        return ArcResult("none")
    if count > MAX_ARC_SETS:
        return ArcResult("fail", reason=f"more than {MAX_ARC_SETS} ARC sets")
    sealers = tuple(
        _tags(value).get(b"d", b"").decode("ascii", "replace").lower()
        for _, (name, value) in sorted(sets, key=lambda item: item[0])
        if name.lower() == b"arc-seal"
    )
    asked = _Asked(lookup)
    try:
        verdict, _, reason = arc.verify(dnsfunc=asked)
    except INTERRUPTS:
        raise  # a soft time limit must reach the task (worker/interrupts.py)
    except Exception as exc:
        return ArcResult("temperror" if asked.failed else "fail", sealers, _cut(exc))
    text = verdict.decode("ascii") if isinstance(verdict, bytes) else "fail"
    if text != "pass" and asked.failed:
        text = "temperror"
    return ArcResult(text, sealers, str(reason)[:REASON_CHARS])
