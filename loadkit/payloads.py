"""Mandrill-shaped, correctly signed webhook bodies of chosen sizes.

An inbound event carries the raw MIME message in ``raw_msg`` and every attachment again,
base64, in ``attachments``: a POST is about 2.2x the message, as in real traffic. The JSON
is written the way Mandrill (PHP) writes it, with ``/`` escaped as ``\\/``, and the body is
form-encoded and signed by :func:`shared.mandrill_signature.signed_form`, exactly as
``kave send`` does.

Every email gets its own Message-ID and its own random attachment bytes (unless
``unique=False``), so the worker stores each one instead of finding a duplicate.
"""

from __future__ import annotations

import base64
import json
import os
import random
import textwrap
import time
import uuid
from dataclasses import dataclass
from typing import Any

from shared.mandrill_signature import signed_form
from shared.webhook import WEBHOOK_PATH

BENCH_WEBHOOK_KEY = "kave-bench-webhook-key"
BENCH_WEBHOOK_URL = f"https://mail.kave.bench{WEBHOOK_PATH}"

_WORDS = (
    "invoice",
    "order",
    "shipment",
    "delivery",
    "meeting",
    "agenda",
    "report",
    "quarterly",
    "review",
    "budget",
    "customer",
    "support",
    "ticket",
    "reply",
    "thanks",
    "regards",
    "please",
    "attached",
    "document",
    "update",
    "schedule",
    "tomorrow",
    "monday",
    "friday",
    "confirm",
    "request",
    "approval",
    "draft",
    "final",
    "version",
)


@dataclass(frozen=True)
class SignedBody:
    body: bytes
    headers: dict[str, str]


def _text(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(n_words)]
    return "\n".join(textwrap.wrap(" ".join(words), 72)) + "\n"


def _php_json(value: Any) -> str:
    # Mandrill's PHP encoder escapes '/' as '\/'; the signature covers exactly these bytes.
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/")


def inbound_event(
    attachment_bytes: int, *, text_words: int = 120, seed: int | None = None
) -> dict[str, Any]:
    """One inbound event; ``attachment_bytes`` of random content (0: no attachment)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    ident = uuid.UUID(int=rng.getrandbits(128)) if seed is not None else uuid.uuid4()
    message_id = f"<{ident.hex}@bench.kave.test>"
    text = _text(rng, text_words)
    html = "<html><body><p>" + text.replace("\n", "<br>\n") + "</p></body></html>\n"
    boundary_alt = f"alt-{ident.hex[:12]}"
    boundary_mix = f"mix-{ident.hex[:12]}"
    headers = {
        "From": "Sender Example <sender@example.org>",
        "To": "inbox@mail.kave.bench",
        "Subject": f"Benchmark message {ident.hex[:8]}",
        "Date": "Tue, 04 Nov 2025 10:00:00 +0000",
        "Message-Id": message_id,
        "Mime-Version": "1.0",
    }
    alternative = (
        f'Content-Type: multipart/alternative; boundary="{boundary_alt}"\n\n'
        f"--{boundary_alt}\nContent-Type: text/plain; charset=utf-8\n\n{text}\n"
        f"--{boundary_alt}\nContent-Type: text/html; charset=utf-8\n\n{html}\n"
        f"--{boundary_alt}--\n"
    )
    attachments: dict[str, Any] = {}
    if attachment_bytes:
        content = (
            rng.randbytes(attachment_bytes) if seed is not None else os.urandom(attachment_bytes)
        )
        b64 = base64.b64encode(content).decode("ascii")
        b64_lines = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
        body = (
            f'Content-Type: multipart/mixed; boundary="{boundary_mix}"\n\n'
            f"--{boundary_mix}\n{alternative}\n"
            f'--{boundary_mix}\nContent-Type: application/pdf; name="report.pdf"\n'
            'Content-Disposition: attachment; filename="report.pdf"\n'
            f"Content-Transfer-Encoding: base64\n\n{b64_lines}\n"
            f"--{boundary_mix}--\n"
        )
        attachments["report.pdf"] = {
            "name": "report.pdf",
            "type": "application/pdf",
            "content": b64,
            "base64": True,
        }
    else:
        body = alternative
    head = "".join(f"{name}: {value}\n" for name, value in headers.items())
    raw_msg = head + body
    return {
        "event": "inbound",
        "ts": int(time.time()),
        "msg": {
            "raw_msg": raw_msg,
            "headers": headers,
            "text": text,
            "html": html,
            "from_email": "sender@example.org",
            "from_name": "Sender Example",
            "to": [["inbox@mail.kave.bench", None]],
            "email": "inbox@mail.kave.bench",
            "subject": headers["Subject"],
            "tags": [],
            "sender": None,
            "spam_report": {"score": 0.1, "matched_rules": []},
            "spf": {"result": "pass", "detail": "sender SPF authorized"},
            "dkim": {"signed": True, "valid": True},
            "attachments": attachments,
            "images": {},
        },
    }


def tracking_event(seed: int) -> dict[str, Any]:
    return {
        "event": "open",
        "ts": 1_700_000_000 + seed,
        "_id": f"{seed:032x}",
        "msg": {
            "_id": f"{seed:032x}",
            "email": f"user{seed}@example.org",
            "subject": "Hello",
            "state": "sent",
            "tags": [],
            "metadata": {},
        },
        "ip": "192.0.2.1",
        "user_agent": "Mozilla/5.0",
    }


def events_json(events: list[dict[str, Any]]) -> str:
    return _php_json(events)


def sign(events: str, *, key: str = BENCH_WEBHOOK_KEY, url: str = BENCH_WEBHOOK_URL) -> SignedBody:
    return SignedBody(*signed_form(key, url, events))


# Attachment sizes that give the POST sizes the issues name (base64 in JSON in a form field
# makes a POST about three times its attachment).
SIZES: dict[str, int] = {
    "8KB": 0,  # a small text + HTML email, no attachment
    "100KB": 32 * 1024,  # an email with a 32 KB attachment
    "1MB": 330 * 1024,  # an email with a 330 KB attachment
    "3MB": 1_000_000,  # an email with a ~1 MB attachment
}
SMALL_TEXT_WORDS = 190  # brings the small email to ~8 KB on the wire
BIG_EMAIL_ATTACHMENT = 18_500_000  # a ~25 MB message, a ~55 MB POST


def email_events(size: str, *, seed: int | None = None) -> str:
    words = SMALL_TEXT_WORDS if size == "8KB" else 120
    return events_json([inbound_event(SIZES[size], text_words=words, seed=seed)])


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
