"""The README's example HTTP receiver verifies what the dispatcher signs (pure test)."""

from __future__ import annotations

import base64
import os
import re
import time
from typing import Any

from tests.services import REPO
from worker.handoff.http import sign


def readme_receiver(secret: str) -> dict[str, Any]:
    """Run the README's HTTP receiver block, without its serve_forever() line."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Handing emails to your platform", 1)[1]
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "def verified" in b
    )
    code = "\n".join(line for line in block.splitlines() if "serve_forever" not in line)
    namespace: dict[str, Any] = {}
    os.environ["KAVE_HANDOFF_SECRET"] = secret
    try:
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    finally:
        del os.environ["KAVE_HANDOFF_SECRET"]
    return namespace


def test_readme_receiver_accepts_kave_signatures_and_refuses_forgeries() -> None:
    key = os.urandom(32)
    verified = readme_receiver("whsec_" + base64.b64encode(key).decode())["verified"]
    body = b'{"type":"email.received","data":{"email_id":1}}'
    now = int(time.time())
    headers = {
        "webhook-id": "k1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(key, "k1", now, body),
    }
    assert verified(headers, body) is True
    assert verified(headers, body + b" ") is False
    assert verified({**headers, "webhook-id": "k2"}, body) is False
    stale = {**headers, "webhook-timestamp": str(now - 3600)}
    stale["webhook-signature"] = sign(key, "k1", now - 3600, body)
    assert verified(stale, body) is False
    assert (
        verified({**headers, "webhook-signature": sign(os.urandom(32), "k1", now, body)}, body)
        is False
    )
