"""The README's example route under ``kave run`` (what ``make run`` starts): a thread of a
root, a reply and an out-of-office reaches an HTTP handler, which verifies every request's
Standard Webhooks signature. The root and the reply arrive once each (the root after a
500), threaded and stripped; the out-of-office never does."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx

from loadkit.hostile_mail import inbound_event
from tests.handoff_platform import HttpPlatform
from tests.kave.support import env_without_kave_settings, kave, kave_run
from tests.services import wait_until

SECRET = "whsec_" + base64.b64encode(b"p" * 32).decode()

ROOT = """From: Ana Lima <ana@example.org>
To: support@example.com
Subject: Invoice 42 is wrong
Message-ID: <root-42@example.org>
Date: Mon, 07 Dec 2026 09:00:00 +0000
Content-Type: text/plain; charset=utf-8

Hi, invoice 42 charges us twice for March.

Ana
"""
# A reply that names its parent in In-Reply-To only: it joins the stored root's thread.
REPLY = """From: Ana Lima <ana@example.org>
To: support@example.com
Subject: Re: Invoice 42 is wrong
Message-ID: <reply-42@example.org>
In-Reply-To: <root-42@example.org>
Date: Mon, 07 Dec 2026 10:00:00 +0000
Content-Type: text/plain; charset=utf-8

Here is the statement you asked for.

Best regards,
Ana Lima

On Mon, Dec 7, 2026 at 9:30 AM Support <support@example.com> wrote:
> Could you send us your bank statement?
"""
OUT_OF_OFFICE = """From: Ben Ode <ben@example.org>
To: support@example.com
Subject: Automatic reply: Invoice 42 is wrong
Message-ID: <ooo-42@example.org>
In-Reply-To: <root-42@example.org>
Auto-Submitted: auto-replied
Date: Mon, 07 Dec 2026 10:01:00 +0000
Content-Type: text/plain; charset=utf-8

I am out of the office until Monday.
"""


def _routes(path: Path, url: str) -> Path:
    """The README's "inbox" route, pointed at the local handler."""
    path.write_text(
        "routes:\n"
        "  - name: inbox\n"
        "    match: {auto_submitted: false}\n"
        "    handler:\n"
        "      http:\n"
        f"        url: {url}\n"
        "        secret_env: KAVE_HANDOFF_SECRET_PLATFORM\n"
        "        timeout_seconds: 10\n",
        encoding="utf-8",
    )
    return path


def _batch(path: Path, *raws: str) -> Path:
    events = [inbound_event(raw.replace("\n", "\r\n"), "support@example.com") for raw in raws]
    path.write_text(json.dumps(events), encoding="utf-8")
    return path


def test_a_thread_reaches_the_readme_route_under_kave_run(tmp_path: Path) -> None:
    with HttpPlatform(SECRET) as platform:
        platform.fail_first = 1  # the first hand-off is answered 500 and tried again
        env = {
            **env_without_kave_settings(),
            "KAVE_HANDOFF_ROUTES_FILE": str(_routes(tmp_path / "routes.yaml", platform.url)),
            "KAVE_HANDOFF_SECRET_PLATFORM": SECRET,
        }
        with kave_run(tmp_path, env) as run:
            sent = kave(["send", str(_batch(tmp_path / "root.json", ROOT))], env, tmp_path)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            wait_until(lambda: len(platform.bodies) == 1, 60, "the root handed off")
            batch = _batch(tmp_path / "replies.json", REPLY, OUT_OF_OFFICE)
            sent = kave(["send", str(batch)], env, tmp_path)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            wait_until(lambda: len(platform.bodies) >= 2, 60, "the reply handed off")
            # The out-of-office was stored with the reply (one delivery): had a route
            # taken it, it would have been handed off by now; give it a moment more.
            wait_until(lambda: "ooo-42" in kave(["emails"], env, tmp_path).stdout, 30, "stored")
            time.sleep(2)
            # Flower runs with the routes file too, but hands nothing off: it needs no
            # route secret, and must not be refused (and restarted) for lacking one.
            flower = httpx.get(f"http://127.0.0.1:{run.flower_port}/healthcheck", timeout=10)
            output = run.output
    assert flower.status_code == 200, output
    assert "flower exited" not in output
    assert run.exit_code == 0
    assert SECRET not in output

    assert platform.bad_signatures == 0
    assert sorted(platform.seen.values()) == [1, 2]  # the root twice: a 500, then 204
    documents = {body["data"]["message_id"]: body["data"] for body in platform.bodies.values()}
    assert set(documents) == {"<root-42@example.org>", "<reply-42@example.org>"}
    root, reply = documents["<root-42@example.org>"], documents["<reply-42@example.org>"]
    assert reply["conversation_id"] == root["conversation_id"] == "root-42@example.org"
    assert reply["reply_text"] == "Here is the statement you asked for."
    assert root["reply_text"] == "Hi, invoice 42 charges us twice for March."
    assert (reply["auto_submitted"], reply["bulk"], reply["forwarded_text"]) == (
        False,
        False,
        None,
    )
