"""DMARC (RFC 7489) without the SPF re-check: the policy record, the organizational
domain, and identifier alignment.

Hand-written rather than taken from authheaders or checkdmarc: authheaders' DMARC
computes SPF itself from the connecting IP, which Kave never sees (Mandrill checked SPF
and reports the result), and checkdmarc validates whole domains with many look-ups.
What DMARC needs from us is small: find the record (the From: domain's, else its
organizational domain's), read ``p``, ``sp``, ``adkim``, ``aspf``, and compare domains.
The organizational domain comes from the Public Suffix List (publicsuffixlist, which
ships the list: no download at run time).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from publicsuffixlist import PublicSuffixList

from worker.ingest.trust.dns import TxtLookup

Lookup = Literal["found", "absent", "failed"]


@dataclass(frozen=True, slots=True)
class Policy:
    """A DMARC record as it bears on a verdict (defaults per RFC 7489 6.3)."""

    domain: str  # where the record was found
    p: str = "none"
    sp: str | None = None
    adkim: str = "r"
    aspf: str = "r"


@dataclass(frozen=True, slots=True)
class PolicyLookup:
    status: Lookup  # found; absent: no record; failed: DNS did not answer
    policy: Policy | None = None


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """The registrable domain (``mail.bank.example`` -> ``bank.example``); a domain
    under no known suffix (``customer.test``) is its own."""
    domain = domain.lower().rstrip(".")
    found = _suffixes().privatesuffix(domain)
    return found or domain


def aligned(identifier: str, from_domain: str, mode: str) -> bool:
    """Whether an authenticated domain aligns with the From: domain: the same domain
    (strict, ``s``) or the same organizational domain (relaxed, ``r``)."""
    identifier, from_domain = identifier.lower().rstrip("."), from_domain.lower().rstrip(".")
    if identifier == from_domain:
        return True
    if mode == "s":
        return False
    return organizational_domain(identifier) == organizational_domain(from_domain)


def parse_record(domain: str, text: bytes) -> Policy | None:
    """A ``v=DMARC1`` record's policy, or None when the text is not one."""
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        return None
    tags: dict[str, str] = {}
    for part in decoded.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip().lower())
    if tags.get("v") != "dmarc1":
        return None
    p = tags.get("p")
    if p not in ("none", "quarantine", "reject"):
        # RFC 7489 6.6.3: a record with a bad p= is treated as p=none when rua exists,
        # else as absent; both give nothing to enforce.
        p = "none"
    sp = tags.get("sp")
    return Policy(
        domain=domain,
        p=p,
        sp=sp if sp in ("none", "quarantine", "reject") else None,
        adkim="s" if tags.get("adkim") == "s" else "r",
        aspf="s" if tags.get("aspf") == "s" else "r",
    )


def _record_at(lookup: TxtLookup, domain: str) -> PolicyLookup:
    answer = lookup.txt(f"_dmarc.{domain}")
    if answer.status != "found":
        return PolicyLookup(answer.status)
    policies = [p for p in (parse_record(domain, r) for r in answer.records) if p is not None]
    # More than one DMARC record is as none (RFC 7489 6.6.3).
    if len(policies) != 1:
        return PolicyLookup("absent")
    return PolicyLookup("found", policies[0])


def find_policy(lookup: TxtLookup, from_domain: str) -> PolicyLookup:
    """The From: domain's DMARC policy, else its organizational domain's."""
    found = _record_at(lookup, from_domain)
    if found.status != "absent":
        return found
    org = organizational_domain(from_domain)
    if org == from_domain:
        return found
    return _record_at(lookup, org)


def effective_policy(policy: Policy, from_domain: str) -> str:
    """``sp`` applies to a subdomain when the record is its organizational domain's."""
    if policy.sp is not None and policy.domain != from_domain.lower():
        return policy.sp
    return policy.p
