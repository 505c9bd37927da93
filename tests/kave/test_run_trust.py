"""Routes on sender trust under ``kave run`` (what ``make run`` starts): a route requiring
``sender_trust: pass`` and a route allowing the aligned domain ``customer.test`` each hand
off the email customer.test signed, and never the spoofed ones. DNS is a real local
server (loadkit/dns_server.py) the worker asks through ``KAVE_SENDER_TRUST_DNS``; the mail
is signed with dkimpy's test key (loadkit/dkim/)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from loadkit.dns_server import DnsServer
from loadkit.hostile_mail import inbound_event
from loadkit.signed_mail import key_records, message, signed
from tests.handoff_platform import HttpPlatform
from tests.kave.support import env_without_kave_settings, kave, kave_run
from tests.services import wait_until

SECRET = "whsec_" + base64.b64encode(b"t" * 32).decode()

ALIGNED = signed(message("Ana <a@customer.test>", message_id="<ok@customer.test>"), "customer.test")
# customer.test's valid signature over a bank's From: (a signature never vouches for
# another domain), and a customer.test From: nobody signed, whose envelope is
# customer.test's (what an envelope-matched allow-list would have taken).
SPOOFED_BANK = signed(
    message("CEO <ceo@bank.test>", message_id="<bank@customer.test>"), "customer.test"
)
SPOOFED_CUSTOMER = message(
    "Ana <a@customer.test>", message_id="<forged@customer.test>", Return_Path="<a@customer.test>"
)


def _routes(path: Path, url: str) -> Path:
    handler = {"http": {"url": url, "secret_env": "KAVE_HANDOFF_SECRET_PLATFORM"}}
    routes = [
        {"name": "trusted", "match": {"recipient": "trusted@example.com", "sender_trust": "pass"}},
        {
            "name": "allowed",
            "match": {"recipient": "allowed@example.com", "from_allow": ["customer.test"]},
        },
    ]
    path.write_text(json.dumps({"routes": [{**r, "handler": handler} for r in routes]}))
    return path


def _batch(path: Path) -> Path:
    events = [
        inbound_event(raw.decode(), recipient)
        for recipient in ("trusted@example.com", "allowed@example.com")
        for raw in (ALIGNED, SPOOFED_BANK, SPOOFED_CUSTOMER)
    ]
    path.write_text(json.dumps(events), encoding="utf-8")
    return path


def test_trust_routes_hand_off_the_aligned_email_and_never_the_spoofed(tmp_path: Path) -> None:
    with DnsServer() as dns_server, HttpPlatform(SECRET) as platform:
        dns_server.records.update(key_records("customer.test"))
        dns_server.records["_dmarc.customer.test"] = ["v=DMARC1; p=reject"]
        env = {
            **env_without_kave_settings(),
            "KAVE_HANDOFF_ROUTES_FILE": str(_routes(tmp_path / "routes.json", platform.url)),
            "KAVE_HANDOFF_SECRET_PLATFORM": SECRET,
            "KAVE_SENDER_TRUST_DNS": dns_server.address,
        }
        with kave_run(tmp_path, env):
            sent = kave(["send", str(_batch(tmp_path / "batch.json"))], env, tmp_path)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            wait_until(lambda: len(platform.bodies) >= 2, 60, "the aligned emails handed off")
            wait_until(
                lambda: kave(["emails"], env, tmp_path).stdout.count("forged@customer.test") == 2,
                30,
                "every email stored",
            )
            time.sleep(2)  # a spoofed email a route took would have been handed off by now
            tested = kave(
                ["routes", "test", "allowed@example.com", "--eml", str(_eml(tmp_path))],
                env,
                tmp_path,
            )
    documents = [body["data"] for body in platform.bodies.values()]
    assert sorted((d["route"], d["message_id"]) for d in documents) == [
        ("allowed", "<ok@customer.test>"),
        ("trusted", "<ok@customer.test>"),
    ]
    assert {d["sender_trust"] for d in documents} == {"pass"}
    assert documents[0]["sender_trust_reasons"]["aligned_by"] == "dkim:customer.test"
    # `kave routes test --eml` verifies the message as the worker did and says so.
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "sender_trust: pass" in tested.stdout
    assert "allowed ->" in tested.stdout


def _eml(tmp_path: Path) -> Path:
    path = tmp_path / "aligned.eml"
    path.write_bytes(ALIGNED)
    return path
