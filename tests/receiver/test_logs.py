"""What the running receiver writes to its log: enough to act on, nothing secret."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from receiver.signature import redact_url
from tests.services import TEST_WEBHOOK_KEY, TEST_WEBHOOK_URL, wait_until
from tests.webhooks import WEBHOOK_PATH, fixture_events, signed_form


def _log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def test_rejected_signature_logs_url_and_length_but_no_key_or_body(
    receiver: str, service_dir: Path
) -> None:
    events = fixture_events("inbound.json")
    body, headers = signed_form(events, key="wrong-key")
    response = httpx.post(receiver + WEBHOOK_PATH, content=body, headers=headers, timeout=10)
    assert response.status_code == 401
    request_id = response.headers["X-Request-ID"]
    log_path = service_dir / "receiver.log"

    def rejected() -> list[dict[str, object]]:
        return [
            line
            for line in _log_lines(log_path)
            if line.get("event") == "webhook.signature_rejected"
            and line.get("request_id") == request_id
        ]

    wait_until(lambda: bool(rejected()), 10, "the rejection log line")
    (line,) = rejected()
    assert line["level"] == "warning"
    assert line["urls_tried"] == [TEST_WEBHOOK_URL]
    assert line["body_length"] == len(body)
    text = log_path.read_text(errors="replace")
    assert TEST_WEBHOOK_KEY not in text
    assert headers["X-Mandrill-Signature"] not in text
    assert "Received: from mail" not in text  # a line of the raw message
    assert "%22raw_msg%22" not in text


def test_url_credentials_are_redacted_for_logs() -> None:
    assert redact_url("https://user:pw@host/hook") == "https://***@host/hook"
    assert redact_url("https://host/hook") == "https://host/hook"
    assert (
        redact_url("https://u:p@host/hook?token=s3cret&x=1")
        == "https://***@host/hook?token=***&x=***"
    )
