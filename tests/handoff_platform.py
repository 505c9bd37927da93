"""A stand-in for the platform of the hand-off tests: its Celery handler and HTTP receiver.

Both are the README's example handlers ("Handing emails to your platform"), with a record
of what they saw kept in Redis (Celery) or in memory (HTTP): every idempotency key they
were handed, how often, and what they kept after dropping repeats (their dedup count).

The Celery app runs as a real worker process: ``celery -A tests.handoff_platform worker -Q
$PLATFORM_QUEUE``; its broker is ``PLATFORM_BROKER_URL``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
from celery import Celery

BROKER = os.environ.get("PLATFORM_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery("platform", broker=BROKER)
app.conf.update(task_acks_late=True, task_ignore_result=True)
SEEN = "platform:seen"  # every key handed over, with repeats (a list)
KEPT = "platform:kept"  # keys after dedup (a set)


@app.task(name="kave.handlers.tickets")
def handle_ticket(email_id: int, dispatch_id: int, idempotency_key: str, route: str) -> None:
    store = redis.Redis.from_url(BROKER)
    store.rpush(SEEN, idempotency_key)
    # Drop repeats by the key: SADD answers 0 for a key already handled.
    if store.sadd(KEPT, idempotency_key):
        store.hset("platform:emails", idempotency_key, email_id)


# --------------------------------------------------------------------------- HTTP receiver

TOLERANCE_SECONDS = 300


def verify(secret: str, headers: Any, body: bytes) -> bool:
    """Standard Webhooks verification: the signature, and a timestamp within 5 minutes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(expected, candidate.removeprefix("v1,"))
        for candidate in headers.get("webhook-signature", "").split()
        if candidate.startswith("v1,")
    )


class HttpPlatform:
    """A threaded HTTP receiver; ``fail_first`` / ``always_fail`` inject 500 answers."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.seen: Counter[str] = Counter()
        self.bodies: dict[str, dict[str, Any]] = {}
        self.bad_signatures = 0
        self.fail_first = 0
        self.always_fail = False
        self.lock = threading.Lock()
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                self.send_response(platform.answer(self.headers, body))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.handler_class = Handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/mail"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.fail_rate = 0.0  # answer 500 to this share of requests, at random
        self.random = random.Random(10)

    def answer(self, headers: Any, body: bytes) -> int:
        if not verify(self.secret, headers, body):
            with self.lock:
                self.bad_signatures += 1
            return 401
        key = headers["webhook-id"]
        with self.lock:
            self.seen[key] += 1
            if self.always_fail or self.fail_first > 0 or self.random.random() < self.fail_rate:
                self.fail_first = max(self.fail_first - 1, 0)
                return 500
            self.bodies.setdefault(key, json.loads(body))
        return 204

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.bodies.clear()
            self.bad_signatures = 0
            self.fail_first = 0
            self.always_fail = False
            self.fail_rate = 0.0

    def down(self) -> None:
        """An outage: the port refuses connections until :meth:`up`."""
        self.server.shutdown()
        self.server.server_close()

    def up(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler_class)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self) -> HttpPlatform:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
