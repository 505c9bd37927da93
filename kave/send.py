"""``kave send``: post a correctly signed Mandrill batch, as Mandrill would."""

from __future__ import annotations

import json
import time
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import httpx

from shared.formdata import EVENTS_FIELD
from shared.mandrill_signature import signed_form
from shared.settings import Settings, SettingsError


def events_from_eml(raw: bytes) -> str:
    """Wrap one message as a single inbound event, shaped like Mandrill's."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    to = [(address, name or None) for name, address in getaddresses(message.get_all("to", []))]
    from_pairs = getaddresses(message.get_all("from", []))
    from_name, from_email = from_pairs[0] if from_pairs else ("", "")
    msg: dict[str, Any] = {
        "raw_msg": raw.decode("utf-8", errors="replace"),
        "email": to[0][0] if to else None,
        "from_email": from_email or None,
        "from_name": from_name or None,
        "subject": str(message.get("subject", "")),
        "to": [list(pair) for pair in to],
        "tags": [],
        "sender": None,
    }
    return json.dumps([{"event": "inbound", "ts": int(time.time()), "msg": msg}])


def events_from_file(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix.lower() == ".eml":
        return events_from_eml(data)
    text = data.decode("utf-8")
    parsed = json.loads(text)
    if isinstance(parsed, list):
        return text  # sent byte for byte, as Mandrill would, never re-serialised
    if isinstance(parsed, dict) and isinstance(parsed.get(EVENTS_FIELD), list):
        return json.dumps(parsed[EVENTS_FIELD])
    raise ValueError(f"{path} holds neither a mandrill_events array nor an .eml message")


def signed_request(settings: Settings, events: str) -> tuple[str, bytes, dict[str, str]]:
    if not settings.mandrill_webhook_urls or not settings.mandrill_webhook_keys:
        raise SettingsError(
            "no webhook URL and key to sign with: start `kave run` (it writes var/run.env) "
            "or set KAVE_MANDRILL_WEBHOOK_URLS and KAVE_MANDRILL_WEBHOOK_KEYS"
        )
    url = settings.mandrill_webhook_urls[0]
    body, headers = signed_form(settings.webhook_keys()[0], url, events)
    return url, body, headers


def send_file(settings: Settings, path: Path, *, target_url: str | None = None) -> int:
    try:
        events = events_from_file(path)
    except (OSError, ValueError) as exc:
        print(f"kave send: cannot read {path}: {exc}")
        return 2
    signed_url, body, headers = signed_request(settings, events)
    url = target_url or signed_url
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        print(f"kave send: could not reach {url}: {type(exc).__name__}: {exc}")
        return 1
    try:
        answer = response.json()
    except ValueError:
        answer = {"message": response.text[:200]}
    delivery_id = answer.get("delivery_id") if isinstance(answer, dict) else None
    print(f"status {response.status_code}  delivery_id {delivery_id}")
    if response.status_code != 200:
        print(f"  {answer.get('message') if isinstance(answer, dict) else answer}")
        return 1
    return 0
