"""The agent's HTTP handler: records when each handed-off email arrived.

Run as its own process (``python -m bench.tta.handler --port P``), so that neither the
sender nor the workers share its interpreter. It verifies each POST the Standard Webhooks
way with the secret in ``KAVE_HANDOFF_SECRET_TTA`` (a forged or stale POST counts as bad
and is answered 401), then records the wall-clock time the body was read under the
email's keys: ``data.message_id`` (what Kave's documents carry) and ``data.delivery_id``
(what the ceiling's stub carries). ``GET /received`` answers every record as JSON;
``POST /reset`` forgets them.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

SECRET_ENV = "KAVE_HANDOFF_SECRET_TTA"  # noqa: S105 - the variable's name
# Where the ceiling's worker POSTs (not a KAVE_* variable: not a setting, passed as it is).
HANDLER_URL_ENV = "TTA_HANDLER_URL"
PATH = "/agent"
MATCH_FIELDS = ("message_id", "delivery_id")
Headers = Mapping[str, str] | Message  # a dict, or the request's headers


def match_key(value: str) -> str:
    """A Message-ID without its angle brackets (the load and the documents agree then)."""
    return value.strip().strip("<>")


def verified(webhook: Webhook, headers: Headers, body: bytes) -> bool:
    """Checked by the Standard Webhooks reference library, not by code of ours: the
    handler stands for the platform, and must not share a mistake with Kave's signer."""
    try:
        webhook.verify(body, dict(headers.items()))
    except WebhookVerificationError:
        return False
    return True


class Recorder:
    """Arrival times by match key (the first arrival: a repeat keeps the first time)."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.arrived: dict[str, float] = {}
        self.repeats = 0
        self.bad = 0
        self.lock = threading.Lock()

    def record(self, headers: Headers, body: bytes, at: float) -> int:
        """The status to answer to one POST read at ``at`` (time.time())."""
        if not verified(self.webhook, headers, body):
            with self.lock:
                self.bad += 1
            return 401
        data = json.loads(body).get("data") or {}
        keys = [match_key(str(data[name])) for name in MATCH_FIELDS if data.get(name)]
        with self.lock:
            for key in keys:
                if key in self.arrived:
                    self.repeats += 1
                else:
                    self.arrived[key] = at
        return 204

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"arrived": dict(self.arrived), "repeats": self.repeats, "bad": self.bad}

    def reset(self) -> None:
        with self.lock:
            self.arrived.clear()
            self.repeats = self.bad = 0


def make_server(recorder: Recorder, port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the workers' pools reuse connections

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            at = time.time()
            if self.path == "/reset":
                recorder.reset()
                self._answer(204)
                return
            self._answer(recorder.record(self.headers, body, at))

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._answer(200, b'{"status":"ok"}')
                return
            self._answer(200, json.dumps(recorder.snapshot()).encode())

        def _answer(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    make_server(Recorder(os.environ[SECRET_ENV]), args.port).serve_forever()


if __name__ == "__main__":
    main()
