"""Sender trust: is the visible From: who the email says it is?

Unlike ``worker.ingest.derive`` this room does I/O (DNS), so ingest runs it before the
pure row building and hands its columns in (``worker.ingest.rows.email_rows``).

- ``dns``: TXT look-ups with short timeouts and a TTL cache; "absent" apart from "failed";
- ``signatures``: DKIM and ARC re-verified over the raw message (dkimpy);
- ``dmarc``: the DMARC record, the organizational domain, alignment;
- ``verdict``: the pure rules from that evidence to ``pass``/``fail``/``none``/``unknown``.

:class:`SenderTrust` is the face: one per worker process (its DNS cache is the
process's), :meth:`SenderTrust.columns` gives an email's ``sender_trust`` and
``sender_trust_reasons``. It imports the parser's types and nothing of storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.ingest.parsing import ParsedEmail
from worker.ingest.trust.dmarc import PolicyLookup, find_policy
from worker.ingest.trust.dns import TxtLookup
from worker.ingest.trust.signatures import ArcResult, verify_arc, verify_dkim
from worker.ingest.trust.verdict import VERDICTS, Evidence, Verdict, decide

__all__ = ["VERDICTS", "SenderTrust", "Verdict", "address_domain", "evidence_for"]


def address_domain(address: str | None) -> str | None:
    """The domain of an address, lower case; None without one."""
    if not address or "@" not in address:
        return None
    domain = address.rpartition("@")[2].strip().strip(">").lower().rstrip(".")
    return domain or None


def _envelope_domain(email: ParsedEmail) -> str | None:
    """The domain SPF checked: the envelope sender, as the topmost Return-Path records."""
    for name, value in email.headers:
        if name.lower() == "return-path":
            return address_domain(value.strip().strip("<>"))
    return None


def evidence_for(email: ParsedEmail, lookup: TxtLookup) -> Evidence:
    from_domain = address_domain(email.from_address)
    # dkimpy reads the whole message even to find no signature: only signed mail goes to it.
    names = {name.lower() for name, _ in email.headers}
    return Evidence(
        from_domain=from_domain,
        signatures=verify_dkim(email.raw, lookup) if "dkim-signature" in names else (),
        spf_result=email.spf_result,
        spf_domain=_envelope_domain(email),
        policy=find_policy(lookup, from_domain) if from_domain else _NO_POLICY,
        arc=verify_arc(email.raw, lookup) if "arc-seal" in names else ArcResult("none"),
        mandrill_dkim=(email.dkim_signed, email.dkim_valid),
    )


class SenderTrust:
    """Verifies senders through one DNS resolver and cache (``KAVE_SENDER_TRUST_DNS``)."""

    def __init__(self, nameservers: Sequence[str] = (), timeout: float = 2.0) -> None:
        self.lookup = TxtLookup(nameservers, timeout)

    def verdict(self, email: ParsedEmail) -> tuple[Verdict, dict[str, Any]]:
        return decide(evidence_for(email, self.lookup))

    def columns(self, email: ParsedEmail) -> dict[str, Any]:
        verdict, reasons = self.verdict(email)
        return {"sender_trust": verdict, "sender_trust_reasons": reasons}


_NO_POLICY = PolicyLookup("absent")
