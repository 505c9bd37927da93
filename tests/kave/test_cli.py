"""The ``kave`` command, run as a real process."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from shared.models import Email
from shared.settings import Settings
from shared.webhook import WEBHOOK_PATH
from tests.kave.support import env_without_kave_settings, kave, kave_run
from tests.services import FIXTURES, child_env, derive_settings, wait_until
from tests.webhooks import wait_for_deliveries


@pytest.mark.usefixtures("worker", "clean_db")
def test_send_json_and_eml_files(
    receiver: str, base_settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    # The registered URL is signed; --to says where the receiver really listens.
    target = receiver + WEBHOOK_PATH
    env = child_env(base_settings)
    result = kave(["send", str(FIXTURES / "inbound_reply.json"), "--to", target], env)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"status 200\s+delivery_id (\S+)", result.stdout)
    assert match

    message = EmailMessage()
    message["From"] = "Ana <ana@example.org>"
    message["To"] = "inbox@example.com"
    message["Subject"] = "from an eml file"
    message["Message-ID"] = "<eml-file-test@example.org>"
    message.set_content("hello")
    message.add_attachment(b"%PDF-1.4 tiny", "application", "pdf", filename="doc.pdf")
    eml = tmp_path / "message.eml"
    eml.write_bytes(message.as_bytes())
    result = kave(["send", str(eml), "--to", target], env)
    assert result.returncode == 0, result.stdout + result.stderr
    eml_delivery = re.search(r"delivery_id (\S+)", result.stdout)
    assert eml_delivery

    wait_for_deliveries(engine, [match.group(1), eml_delivery.group(1)])
    with Session(engine) as session:
        subjects = set(session.scalars(select(Email.subject)))
        eml_email = session.scalars(select(Email).where(Email.subject == "from an eml file")).one()
        assert [a.filename for a in eml_email.attachments] == ["doc.pdf"]
    assert "from an eml file" in subjects
    assert eml_email.envelope_recipient == "inbox@example.com"


def test_send_exits_non_zero_when_refused(
    receiver: str, base_settings: Settings, tmp_path: Path
) -> None:
    wrong_key = derive_settings(base_settings, mandrill_webhook_keys=["not-the-key"])
    target = receiver + WEBHOOK_PATH
    result = kave(["send", str(FIXTURES / "send.json"), "--to", target], child_env(wrong_key))
    assert result.returncode == 1
    assert "status 401" in result.stdout

    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "events"}')
    result = kave(["send", str(bad), "--to", target], child_env(base_settings))
    assert result.returncode == 2
    assert "neither a mandrill_events array" in result.stdout


def test_run_with_embedded_services_then_send_then_stop(tmp_path: Path) -> None:
    """`kave run` on a machine with nothing configured: embedded PostgreSQL and Redis."""
    env = env_without_kave_settings()
    with kave_run(tmp_path, env) as run:
        output = run.output
        assert f"http://127.0.0.1:{run.port}{WEBHOOK_PATH}" in output
        assert re.search(r"webhook key\s+\S{16,}", output)
        # The sample it suggests is the repository's own copy, and it is there.
        suggested = re.search(r"try\s+kave send (\S+)", output)
        assert suggested
        assert (tmp_path / suggested.group(1)).resolve() == (
            FIXTURES / "inbound_with_multiple_attachments.json"
        )

        sent = kave(
            ["send", str(FIXTURES / "inbound_with_multiple_attachments.json")], env, cwd=tmp_path
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr

        def listed() -> bool:
            shown = kave(["emails"], env, cwd=tmp_path).stdout
            return "sample.pdf" in shown and "sample.txt" in shown

        wait_until(listed, 30, "the email in `kave emails`", interval=0.5)
        shown = kave(["emails"], env, cwd=tmp_path).stdout
        assert "7c595dcfc56b7559" in shown  # sha256 of sample.pdf's decoded bytes
        objects = tmp_path / "var" / "objects" / "attachments"
        assert len([p for p in objects.rglob("*") if p.is_file()]) == 2
    assert run.exit_code == 0
    assert "Kave stopped." in run.output
    assert not (tmp_path / "var" / "run.env").exists()
