"""Issue 32's acceptance under ``kave run`` (what ``make run`` starts): with a route that says
``after: text``, an email with a PDF reaches an HTTP handler exactly once, with its text
ready, even when the worker converting it is killed (SIGKILL, its whole process tree:
the Celery worker, its pool, the conversion child) in the middle of the conversion.
``kave run`` restarts the worker; beat's text sweep queues the content again; the
hand-off held for the text is released once, by the conversion that finishes."""

from __future__ import annotations

import base64
import json
import signal
import time
from email.message import EmailMessage
from pathlib import Path

import psutil

from loadkit import documents
from loadkit.hostile_mail import inbound_event
from tests.handoff_platform import HttpPlatform
from tests.kave.support import env_without_kave_settings, kave, kave_run
from tests.services import wait_until

SECRET = "whsec_" + base64.b64encode(b"t" * 32).decode()
MARKER = "Founder Collaboration Agreement"
# Pages of many lines each: a conversion of seconds (150 pages took about 7 s here under a
# load average of 11), long enough to be caught in the middle by a poll every 20 ms.
PAGES = 150
LINES = 40


def _routes(path: Path, url: str) -> Path:
    path.write_text(
        "routes:\n"
        "  - name: agents\n"
        "    after: text\n"
        "    handler:\n"
        "      http:\n"
        f"        url: {url}\n"
        "        secret_env: KAVE_HANDOFF_SECRET_PLATFORM\n"
        "        timeout_seconds: 10\n",
        encoding="utf-8",
    )
    return path


def _long_pdf() -> bytes:
    def page(number: int) -> bytes:
        lines = b" ".join(
            b"(Clause %d.%d of the " % (number, line) + MARKER.encode() + b" binds both.) Tj"
            b" 0 -14 Td"
            for line in range(LINES)
        )
        return b"BT /F1 10 Tf 72 740 Td " + lines + b" ET"

    return documents.pdf([page(number) for number in range(1, PAGES + 1)])


def _batch(path: Path) -> Path:
    msg = EmailMessage()
    msg["From"] = "Ana Lima <ana@example.org>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "The agreement, signed"
    msg["Message-ID"] = "<agreement-7@example.org>"
    msg.set_content("Signed copy attached.\n")
    msg.add_attachment(_long_pdf(), maintype="application", subtype="pdf", filename="agreement.pdf")
    event = inbound_event(msg.as_string(), "support@example.com")
    path.write_text(json.dumps([event]), encoding="utf-8")
    return path


def _worker_tree(run_pid: int) -> list[psutil.Process]:
    """The Celery worker `kave run` started, with everything under it."""
    for child in psutil.Process(run_pid).children():
        try:
            cmdline = child.cmdline()
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
        if "worker.main" in cmdline and "worker" in cmdline:
            return [child, *child.children(recursive=True)]
    return []


def _converting(run_pid: int) -> bool:
    for process in _worker_tree(run_pid):
        try:
            if "worker.text.child" in process.cmdline():
                return True
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return False


def test_after_text_hands_off_once_with_the_text_even_when_the_converter_is_killed(
    tmp_path: Path,
) -> None:
    with HttpPlatform(SECRET) as platform:
        env = {
            **env_without_kave_settings(),
            "KAVE_HANDOFF_ROUTES_FILE": str(_routes(tmp_path / "routes.yaml", platform.url)),
            "KAVE_HANDOFF_SECRET_PLATFORM": SECRET,
            # The sweep that finds the killed conversion's rows still pending, soon.
            "KAVE_TEXT_SWEEP_AFTER_SECONDS": "3",
            "KAVE_TEXT_SWEEP_INTERVAL_SECONDS": "2",
        }
        with kave_run(tmp_path, env) as run:
            sent = kave(["send", str(_batch(tmp_path / "batch.json"))], env, tmp_path)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            wait_until(lambda: _converting(run.process.pid), 120, "the conversion", interval=0.02)
            doomed = _worker_tree(run.process.pid)
            for process in doomed:
                try:
                    process.send_signal(signal.SIGKILL)
                except psutil.NoSuchProcess:
                    continue
            assert platform.seen == {}  # held: nothing handed off before the text
            wait_until(lambda: "worker restarted" in run.output, 60, "the worker's restart")
            wait_until(lambda: platform.bodies, 180, "the hand-off")
            # A repeat would come from a second release or a lost answer: give the sweeps
            # (every 2 s) time to make one.
            time.sleep(8)
            listed = kave(["emails"], env, tmp_path).stdout
            output = run.output
    assert run.exit_code == 0
    assert "worker exited with code -9" in output
    assert not any(process.is_running() for process in doomed)
    # The killed conversion never finished: the one that did ran in the restarted worker.
    assert output.count("text.converted") == 1
    assert output.index("worker restarted") < output.index("text.converted")

    assert platform.bad_signatures == 0
    assert list(platform.seen.values()) == [1]  # exactly one hand-off, answered 204
    (body,) = platform.bodies.values()
    assert body["data"]["route"] == "agents"
    assert body["data"]["message_id"] == "<agreement-7@example.org>"
    (attachment,) = body["data"]["attachments"]
    assert attachment["filename"] == "agreement.pdf"
    assert attachment["text_status"] == "ready"
    assert MARKER in attachment["text_excerpt"]
    assert attachment["text_url"] == f"/api/v1/attachments/{attachment['id']}/text"
    assert "agreement-7" in listed
