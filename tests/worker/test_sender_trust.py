"""Sender trust on mail signed with dkimpy's own test key, its DNS served by a real
local DNS server (loadkit/dns_server.py): the issue's acceptance cases, and the rules of
the verdict each on its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loadkit.dns_server import DnsServer
from loadkit.hostile_mail import inbound_event
from loadkit.signed_mail import key_records, message, sealed, signed
from worker.ingest import parsing
from worker.ingest.trust import SenderTrust
from worker.ingest.trust.dmarc import aligned, organizational_domain, parse_record

GOOD = signed(message("Ana Lima <a@customer.test>"), "customer.test")


def parse(raw: bytes, **msg: object) -> parsing.ParsedEmail:
    return parsing.parse_inbound(inbound_event(raw.decode(), **msg))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        server.records.update(key_records("customer.test", "list.test"))
        server.records["_dmarc.customer.test"] = ["v=DMARC1; p=reject; adkim=r"]
        server.records["_dmarc.bank.test"] = ["v=DMARC1; p=quarantine"]
        yield server


@pytest.fixture
def trust(dns_server: DnsServer) -> SenderTrust:
    return SenderTrust([dns_server.address], timeout=1.0)


def test_customer_signing_for_its_own_from_passes(trust: SenderTrust) -> None:
    verdict, reasons = trust.verdict(parse(GOOD))
    assert verdict == "pass"
    assert reasons["aligned_by"] == "dkim:customer.test"
    assert reasons["dkim"] == [{"d": "customer.test", "s": "test", "result": "pass", "reason": ""}]
    assert reasons["dmarc"]["p"] == "reject"


def test_the_same_signature_under_a_bank_from_is_not_pass(trust: SenderTrust) -> None:
    # The signed From: swapped: the signature breaks, and it was never the bank's.
    swapped = GOOD.replace(b"From: Ana Lima <a@customer.test>", b"From: CEO <ceo@bank.test>")
    verdict, reasons = trust.verdict(parse(swapped))
    assert verdict == "fail"
    assert reasons["from_domain"] == "bank.test"
    # A valid customer.test signature over a bank From: verifies, and does not align.
    forged = signed(message("CEO <ceo@bank.test>"), "customer.test")
    verdict, reasons = trust.verdict(parse(forged))
    assert verdict == "fail"
    assert reasons["dkim"][0]["result"] == "pass"
    assert reasons["aligned_by"] is None


def test_a_domain_without_dmarc_and_an_unaligned_signature_is_none(trust: SenderTrust) -> None:
    forged = signed(message("CEO <ceo@nopolicy.test>"), "customer.test")
    assert trust.verdict(parse(forged))[0] == "none"
    assert trust.verdict(parse(message("someone@nopolicy.test")))[0] == "none"


def test_a_broken_body_hash_fails(trust: SenderTrust) -> None:
    broken = GOOD.replace(b"invoice 42", b"invoice 43")
    verdict, reasons = trust.verdict(parse(broken))
    assert verdict == "fail"
    assert reasons["dkim"][0]["result"] == "fail"
    assert "body hash mismatch" in reasons["dkim"][0]["reason"]


def test_a_broken_signature_of_the_from_domain_fails_without_dmarc(
    dns_server: DnsServer, trust: SenderTrust
) -> None:
    dns_server.records.update(key_records("nodmarc.test"))
    raw = signed(message("a@nodmarc.test"), "nodmarc.test")
    assert trust.verdict(parse(raw))[0] == "pass"
    assert trust.verdict(parse(raw.replace(b"invoice", b"INVOICE")))[0] == "fail"


def test_dns_unreachable_is_unknown_never_pass() -> None:
    with DnsServer() as silent:
        silent.silent = True
        down = SenderTrust([silent.address], timeout=0.3)
        verdict, reasons = down.verdict(parse(GOOD, spf={"result": "pass"}))
        # A second email asks nothing: the failure is cached, not waited for again.
        asked = silent.queries
        assert down.verdict(parse(GOOD))[0] == "unknown"
        assert silent.queries == asked
    assert verdict == "unknown"
    assert reasons["dmarc"]["lookup"] == "failed"


def test_an_arc_sealed_forward_through_a_list_records_the_arc_result(
    trust: SenderTrust,
) -> None:
    # The list tags the subject (breaking the author's signature) and seals what it saw.
    forwarded = sealed(
        GOOD.replace(b"Subject: Invoice 42", b"Subject: [team] Invoice 42"),
        "list.test",
        "dkim=pass header.d=customer.test; dmarc=pass header.from=customer.test",
    )
    verdict, reasons = trust.verdict(parse(forwarded))
    assert reasons["arc"] == {"result": "pass", "sealers": ["list.test"], "reason": "success"}
    assert reasons["dkim"][0]["result"] == "fail"
    assert verdict == "fail"  # ARC is recorded; no sealer is trusted to vouch for the From:


def test_mandrills_spf_pass_for_an_aligned_envelope_passes(trust: SenderTrust) -> None:
    raw = message("a@customer.test", Return_Path="<bounces@mail.customer.test>")
    verdict, reasons = trust.verdict(parse(raw, spf={"result": "pass", "detail": ""}))
    assert (verdict, reasons["aligned_by"]) == ("pass", "spf:mail.customer.test")
    # The same SPF pass for another domain's envelope aligns with nothing.
    raw = message("a@customer.test", Return_Path="<bounces@mailer.test>")
    assert trust.verdict(parse(raw, spf={"result": "pass"}))[0] == "fail"
    # And Mandrill's softfail is no pass.
    raw = message("a@customer.test", Return_Path="<b@customer.test>")
    assert trust.verdict(parse(raw, spf={"result": "softfail"}))[0] == "fail"


def test_the_columns_hold_the_verdict_and_its_reasons(trust: SenderTrust) -> None:
    columns = trust.columns(parse(GOOD, dkim={"signed": True, "valid": True}))
    assert columns["sender_trust"] == "pass"
    assert columns["sender_trust_reasons"]["mandrill_dkim"] == {"signed": True, "valid": True}


def test_dmarc_records_and_alignment() -> None:
    policy = parse_record("x.test", b"v=DMARC1; p=reject; sp=none; adkim=s")
    assert policy is not None
    assert (policy.p, policy.sp, policy.adkim, policy.aspf) == ("reject", "none", "s", "r")
    assert parse_record("x.test", b"v=spf1 -all") is None
    assert organizational_domain("mail.bank.co.uk") == "bank.co.uk"
    assert organizational_domain("customer.test") == "customer.test"
    assert aligned("mail.bank.co.uk", "bank.co.uk", "r")
    assert not aligned("mail.bank.co.uk", "bank.co.uk", "s")
    assert not aligned("evil.co.uk", "bank.co.uk", "r")
