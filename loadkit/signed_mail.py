"""Test mail signed with dkimpy's own test key (loadkit/dkim/README.md), and the
DNS records that publish it: what the sender-trust tests send and serve."""

from __future__ import annotations

from pathlib import Path

import dkim

KEYS = Path(__file__).parent / "dkim"
PRIVATE_KEY = (KEYS / "test.private").read_bytes()
PUBLIC_RECORD = (KEYS / "test.txt").read_text().strip()
SELECTOR = "test"


def message(
    from_address: str, body: str = "Please pay invoice 42 today.\r\n", **headers: str
) -> bytes:
    lines = [
        f"From: {from_address}",
        "To: support@example.com",
        f"Subject: {headers.pop('subject', 'Invoice 42')}",
        f"Message-ID: {headers.pop('message_id', '<m-1@customer.test>')}",
        "Date: Mon, 07 Dec 2026 09:00:00 +0000",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
        "Content-Type: text/plain; charset=utf-8",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def signed(raw: bytes, domain: str) -> bytes:
    """``raw`` with a DKIM-Signature of ``domain`` (selector ``test``) on top."""
    signature = dkim.sign(
        raw,
        SELECTOR.encode(),
        domain.encode(),
        PRIVATE_KEY,
        include_headers=[b"from", b"to", b"subject", b"message-id", b"date"],
    )
    return bytes(signature) + raw


def sealed(raw: bytes, domain: str, results: str) -> bytes:
    """``raw`` as a list at ``domain`` forwards it: its own Authentication-Results
    (``results``), then an ARC set sealed by ``domain``."""
    with_results = f"Authentication-Results: {domain}; {results}\r\n".encode() + raw
    arc = dkim.arc_sign(
        with_results,
        SELECTOR.encode(),
        domain.encode(),
        PRIVATE_KEY,
        domain.encode(),
        timestamp="1765098000",
    )
    return b"".join(arc) + with_results


def key_records(*domains: str) -> dict[str, list[str]]:
    """DNS TXT records publishing the test key for each domain."""
    return {f"{SELECTOR}._domainkey.{domain}": [PUBLIC_RECORD] for domain in domains}
