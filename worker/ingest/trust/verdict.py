"""The sender-trust verdict from its evidence: pure, so every rule is tested directly.

``pass``    the visible From: domain is authenticated: a DKIM signature that verifies
            with a ``d=`` aligned with it, or Mandrill's SPF ``pass`` for an envelope
            domain aligned with it (DMARC identifier alignment, the mode of the
            domain's policy, relaxed without one);
``fail``    nothing aligned passed and the domain publishes a DMARC policy (any ``p``),
            or a signature of the From: domain itself does not verify (a tampered
            message): the From: is not proven and the domain says it could be;
``none``    nothing aligned passed, no DMARC policy, no broken signature of the domain:
            nothing is proven either way (most small senders);
``unknown`` a DNS look-up the verdict needed did not answer: the DMARC policy, or a
            key whose signature might have passed. Never ``pass``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from worker.ingest.trust.dmarc import PolicyLookup, aligned, effective_policy
from worker.ingest.trust.signatures import ArcResult, SignatureResult

Verdict = Literal["pass", "fail", "none", "unknown"]
VERDICTS: tuple[Verdict, ...] = ("pass", "fail", "none", "unknown")


@dataclass(frozen=True, slots=True)
class Evidence:
    from_domain: str | None
    signatures: tuple[SignatureResult, ...]
    spf_result: str | None  # Mandrill's
    spf_domain: str | None  # the envelope (Return-Path) domain SPF checked
    policy: PolicyLookup
    arc: ArcResult
    mandrill_dkim: tuple[bool | None, bool | None] = (None, None)  # signed, valid


def decide(evidence: Evidence) -> tuple[Verdict, dict[str, Any]]:
    """The verdict and the reasons stored with it (a JSON object)."""
    from_domain = evidence.from_domain
    policy = evidence.policy.policy
    adkim = policy.adkim if policy is not None else "r"
    aspf = policy.aspf if policy is not None else "r"
    reasons: dict[str, Any] = {
        "from_domain": from_domain,
        "dkim": [
            {"d": s.domain, "s": s.selector, "result": s.result, "reason": s.reason}
            for s in evidence.signatures
        ],
        "spf": {"result": evidence.spf_result, "domain": evidence.spf_domain},
        "dmarc": {"lookup": evidence.policy.status},
        "arc": {
            "result": evidence.arc.result,
            "sealers": list(evidence.arc.sealers),
            "reason": evidence.arc.reason,
        },
        "mandrill_dkim": {
            "signed": evidence.mandrill_dkim[0],
            "valid": evidence.mandrill_dkim[1],
        },
    }
    if policy is not None:
        reasons["dmarc"].update(
            domain=policy.domain,
            p=effective_policy(policy, from_domain or ""),
            adkim=adkim,
            aspf=aspf,
        )

    verdict, why, aligned_by = _judge(evidence, adkim, aspf)
    reasons["verdict"] = why
    reasons["aligned_by"] = aligned_by
    return verdict, reasons


def _aligned_pass(evidence: Evidence, from_domain: str, adkim: str, aspf: str) -> str | None:
    """What authenticates the From: domain (``dkim:<d>``, ``spf:<domain>``), if anything."""
    for signature in evidence.signatures:
        if signature.result == "pass" and aligned(signature.domain, from_domain, adkim):
            return f"dkim:{signature.domain}"
    spf_domain = evidence.spf_domain
    spf_pass = (evidence.spf_result or "").lower() == "pass"
    if spf_pass and spf_domain and aligned(spf_domain, from_domain, aspf):
        return f"spf:{spf_domain}"
    return None


def _judge(evidence: Evidence, adkim: str, aspf: str) -> tuple[Verdict, str, str | None]:
    from_domain = evidence.from_domain
    if not from_domain:
        return "none", "no From: domain", None
    if evidence.policy.status == "failed":
        return "unknown", "the DMARC policy look-up did not answer", None
    aligned_by = _aligned_pass(evidence, from_domain, adkim, aspf)
    if aligned_by is not None:
        how = "aligned DKIM signature" if aligned_by.startswith("dkim:") else "aligned SPF pass"
        return "pass", how, aligned_by
    if any(s.result == "temperror" for s in evidence.signatures):
        return "unknown", "a DKIM key look-up did not answer", None
    broken_own = any(
        s.result in ("fail", "permerror") and aligned(s.domain, from_domain, "r")
        for s in evidence.signatures
        if s.domain
    )
    if evidence.policy.policy is not None or broken_own:
        why = (
            "DMARC: nothing aligned with the From: domain passed"
            if evidence.policy.policy is not None
            else "a signature of the From: domain does not verify"
        )
        return "fail", why, None
    return "none", "nothing aligned passed; the domain publishes no DMARC policy", None
