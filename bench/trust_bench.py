"""Sender-trust cost per email, DNS cached: ``python -m bench.trust_bench [--emails N]``.

What a worker adds to each email for its sender's verdict (DKIM and ARC re-verified with
dkimpy, the DMARC policy, alignment) once the process's DNS cache holds the sender's
records: the steady state of a worker receiving mail from known domains. DNS is
``loadkit.dns_server`` on 127.0.0.1 (asked only to fill the cache); the mail is signed
with dkimpy's test key (1024-bit RSA). Printed per email, CPU milliseconds of this
process (best of three runs), next to the pure derivations of the same email
(``worker.ingest.derive.email_columns``, the hygiene flags included; the hygiene flags
alone in their own column) for scale. The last case is the email of the ``worker`` stage
(``loadkit.payloads``: 120 words as text and as HTML, its attachment left out, which
neither check reads), so its columns are what that stage's worker pays per email for
both checks. Nothing else is started.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

from loadkit import payloads
from loadkit.dns_server import DnsServer
from loadkit.hostile_mail import inbound_event
from loadkit.signed_mail import key_records, message, sealed, signed
from worker.ingest import derive, parsing
from worker.ingest.derive.hygiene import hygiene_flags
from worker.ingest.trust import SenderTrust


def _cpu_ms_per_call(call: Callable[[], object], count: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(count):
            call()
        best = min(best, time.process_time() - started)
    return best / count * 1000


def _alternative(text: str) -> bytes:
    """An unsigned text + HTML email (the hygiene rules read both parts)."""
    html = "".join(
        f'<p style="color:#333333"><span class="x">{line}</span></p>' for line in text.splitlines()
    )
    head = message("a@customer.test", "").split(b"Content-Type:")[0].decode()
    return (
        head + 'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b--\r\n"
    ).encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=200, help="emails per timed run")
    args = parser.parse_args(argv)

    body = "Please pay invoice 42 today.\r\n" * 10
    big_body = "A line of an ordinary long letter, quoted and requoted.\r\n" * 1800  # ~100 KB
    aligned = signed(message("a@customer.test", body), "customer.test")
    cases = {
        "DKIM pass, aligned (1 KB)": aligned,
        "DKIM pass, aligned (100 KB)": signed(
            message("a@customer.test", big_body), "customer.test"
        ),
        "unsigned, DMARC fail (1 KB)": message("a@customer.test", body),
        "unsigned, HTML + text (100 KB)": _alternative(big_body),
        "list forward, ARC sealed (1 KB)": sealed(
            aligned.replace(b"Subject: Invoice 42", b"Subject: [team] Invoice 42"),
            "list.test",
            "dkim=pass header.d=customer.test",
        ),
        "the worker stage's email": payloads.inbound_event(0, seed=1)["msg"]["raw_msg"].encode(),
    }
    with DnsServer() as dns:
        dns.records.update(key_records("customer.test", "list.test"))
        dns.records["_dmarc.customer.test"] = ["v=DMARC1; p=reject"]
        trust = SenderTrust([dns.address], timeout=2.0)
        print(f"sender trust per email, DNS cached ({args.emails} emails a run, best of 3)")
        print(f"{'email':34} {'verdict':8} {'trust ms':>9} {'hygiene ms':>11} {'derive ms':>10}")
        for name, raw in cases.items():
            email = parsing.parse_inbound(inbound_event(raw.decode()))
            verdict, _ = trust.verdict(email)  # fills the cache
            asked = dns.queries
            trust_ms = _cpu_ms_per_call(partial(trust.verdict, email), args.emails)
            hygiene_ms = _cpu_ms_per_call(
                partial(hygiene_flags, email.subject, email.text_body, email.html_body),
                args.emails,
            )
            derive_ms = _cpu_ms_per_call(partial(derive.email_columns, email), args.emails)
            assert dns.queries == asked, "the timed runs asked DNS: the cache did not hold"
            print(f"{name:34} {verdict:8} {trust_ms:9.2f} {hygiene_ms:11.2f} {derive_ms:10.2f}")


if __name__ == "__main__":
    main()
