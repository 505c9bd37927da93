"""The hand-off end to end: real receiver, real dispatcher worker, a real platform Celery
worker and a real HTTP handler (tests.handoff_platform), no mocks.

Routes of these tests: mail to a ``+ticket-*`` address goes to the platform's Celery task,
any other person-written mail to its HTTP receiver; auto-replies and bounces match no route
(they are recorded as unrouted and never handed off).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import redis
from celery import Celery
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.contract import DISPATCH_SWEEP_TASK
from shared.models import Attachment, DeadLetter, Dispatch, DispatchStatus, Email
from shared.queue import celery_config
from shared.settings import Settings
from tests import handoff_platform, services
from tests.handoff_platform import KEPT, SEEN, HttpPlatform
from tests.kave.support import kave_with_settings
from tests.services import REPO, child_env, derive_settings, free_port, wait_until
from tests.webhooks import post_events, wait_for_deliveries
from worker.handoff.document import document
from worker.handoff.http import post_signed, stored_fields
from worker.handoff.routes import HttpHandler, parse_routes

HANDOFF = Path(__file__).resolve().parents[1] / "fixtures" / "handoff"
SECRET_ENV = "PLATFORM_TEST_HANDOFF_SECRET"
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass
class Stack:
    settings: Settings
    receiver: str
    http: HttpPlatform
    platform: redis.Redis
    metrics_url: str


@pytest.fixture(scope="module")
def stack(base_settings: Settings, service_dir: Path, redis_url: str) -> Iterator[Stack]:
    platform_queue = f"platform-{uuid.uuid4().hex[:8]}"
    # Not KAVE_-prefixed: child_env passes it through to the worker like any secret env var.
    os.environ[SECRET_ENV] = SECRET
    os.environ["PLATFORM_BROKER_URL"] = redis_url
    with HttpPlatform(SECRET) as http:
        routes = service_dir / f"routes-{platform_queue}.json"
        routes.write_text(
            json.dumps(
                {
                    "routes": [
                        {
                            "name": "tickets",
                            "match": {"mailbox_hash": "ticket-*", "auto_submitted": False},
                            "handler": {
                                "celery": {"task": "kave.handlers.tickets", "queue": platform_queue}
                            },
                        },
                        {
                            "name": "web",
                            "match": {"auto_submitted": False},
                            "handler": {
                                "http": {
                                    "url": http.url,
                                    "secret_env": SECRET_ENV,
                                    "timeout_seconds": 5,
                                }
                            },
                        },
                    ]
                }
            )
        )
        metrics_port = free_port()
        settings = derive_settings(
            base_settings,
            queue_name=f"kave-handoff-{uuid.uuid4().hex[:8]}",
            handoff_routes_file=routes,
            handoff_max_attempts=3,
            handoff_backoff_max_seconds=1,
            worker_metrics_port=metrics_port,
        )
        platform_log = service_dir / "platform-worker.log"
        with platform_log.open("ab") as log:
            platform_worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "tests.handoff_platform",
                    "worker",
                    "--loglevel",
                    "INFO",
                    "--pool",
                    "solo",
                    "-Q",
                    platform_queue,
                    "-n",
                    f"{platform_queue}@%h",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=REPO,
                env=child_env(settings, PYTHONUNBUFFERED="1"),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(lambda: b"ready." in platform_log.read_bytes(), 60, "platform worker")
            with (
                services.receiver_process(settings, service_dir / "handoff-receiver.log") as url,
                services.worker_process(settings, service_dir / "handoff-worker.log"),
            ):
                yield Stack(
                    settings,
                    url,
                    http,
                    redis.Redis.from_url(redis_url),
                    f"http://127.0.0.1:{metrics_port}/metrics",
                )
        finally:
            services.stop_process(platform_worker)


@pytest.fixture
def fresh(stack: Stack, clean_db: Engine) -> Stack:
    stack.http.reset()
    stack.platform.delete(SEEN, KEPT, "platform:emails")
    return stack


def message(message_id: str, to: str, body: str = "Hello\n", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Ana <ana@customer.example>"
    msg["To"] = to
    msg["Subject"] = "Help"
    msg["Message-ID"] = message_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def mail(message_id: str, to: str, body: str = "Hello\n", **headers: str) -> str:
    return message(message_id, to, body, **headers).as_string()


def send(stack: Stack, engine: Engine, *messages: tuple[str, str]) -> None:
    batch = [
        {"event": "inbound", "ts": 1764583200, "msg": {"raw_msg": raw, "email": recipient}}
        for raw, recipient in messages
    ]
    response = post_events(stack.receiver, json.dumps(batch))
    assert response.status_code == 200, response.text
    wait_for_deliveries(engine, [response.json()["delivery_id"]])


def dispatches(engine: Engine) -> dict[str, Dispatch]:
    """By the email's Message-ID."""
    with Session(engine) as session:
        rows = session.execute(select(Email.message_id, Dispatch).join(Dispatch)).all()
    return {str(message_id): row for message_id, row in rows}


def settled(engine: Engine, *statuses: str) -> None:
    def done() -> bool:
        rows = dispatches(engine).values()
        return bool(rows) and all(row.status in statuses for row in rows)

    wait_until(done, 60, f"dispatches {statuses}", interval=0.2)


def key_of(engine: Engine, message_id: str, route: str | None) -> str:
    with Session(engine) as session:
        dedup = session.scalar(select(Email.dedup_key).where(Email.message_id == message_id))
    return hashlib.sha256(f"{dedup}\x00{route or ''}".encode()).hexdigest()


def test_each_email_reaches_its_route_and_auto_replies_never_fire(
    fresh: Stack, engine: Engine
) -> None:
    oof = (HANDOFF / "out_of_office_exchange.eml").read_text(encoding="utf-8")
    bounce = (HANDOFF / "dsn_postfix.eml").read_text(encoding="utf-8")
    reply = (
        "Yes, tomorrow works.\n\nOn Mon, Jan 5, 2026 at 9:00 AM Support <support@example.com> "
        "wrote:\n> When can we call?\n"
    )
    send(
        fresh,
        engine,
        (
            mail("<t1@customer.example>", "support+ticket-42@example.com"),
            "support+ticket-42@example.com",
        ),
        (
            mail(
                "<w1@customer.example>",
                "support@example.com",
                reply,
                References="<root@example.com>",
            ),
            "support@example.com",
        ),
        (oof, "support+ticket-42@example.com"),
        (bounce, "support@example.com"),
    )
    settled(engine, DispatchStatus.DELIVERED, DispatchStatus.UNROUTED)
    rows = dispatches(engine)
    assert {k: (r.route, r.status) for k, r in rows.items()} == {
        "<t1@customer.example>": ("tickets", "delivered"),
        "<w1@customer.example>": ("web", "delivered"),
        "<oof-1@example.net>": (None, "unrouted"),
        "<20260101120000.ABC123@mx.example.org>": (None, "unrouted"),
    }
    assert all(r.attempts == 0 for r in rows.values() if r.status == "unrouted")

    # The Celery handler got the ticket's key (and only ids and keys).
    ticket_key = key_of(engine, "<t1@customer.example>", "tickets")
    assert rows["<t1@customer.example>"].idempotency_key == ticket_key
    wait_until(lambda: fresh.platform.sismember(KEPT, ticket_key), 30, "celery handler")
    assert (
        int(fresh.platform.hget("platform:emails", ticket_key) or 0)
        == rows["<t1@customer.example>"].email_id
    )

    # The HTTP handler got a correctly signed POST with what an agent needs.
    web_key = key_of(engine, "<w1@customer.example>", "web")
    assert fresh.http.bad_signatures == 0
    assert set(fresh.http.seen) == {web_key}
    data = fresh.http.bodies[web_key]["data"]
    assert data["reply_text"] == "Yes, tomorrow works."
    assert data["conversation_id"] == "root@example.com"
    assert data["auto_submitted"] is False
    assert (data["bulk"], data["forwarded_text"]) == (False, None)
    assert rows["<w1@customer.example>"].last_status_code == 204

    # Neither handler ever saw the out-of-office or the bounce.
    handed = {k.decode() for k in fresh.platform.lrange(SEEN, 0, -1)} | set(fresh.http.seen)
    assert handed == {ticket_key, web_key}

    # Prometheus counts per route and outcome (the node sums its pool processes).
    metrics = httpx.get(fresh.metrics_url, timeout=5).text
    assert 'kave_worker_dispatches_total{outcome="delivered",route="tickets"}' in metrics
    assert 'kave_worker_dispatches_total{outcome="delivered",route="web"}' in metrics


def test_the_http_body_lists_the_attachments_in_order_without_their_bytes(
    fresh: Stack, engine: Engine
) -> None:
    msg = message("<files@customer.example>", "support@example.com", "Two files.\n")
    msg.add_attachment(b"%PDF-1.4 report", maintype="application", subtype="pdf",
                       filename="report.pdf")  # fmt: skip
    msg.add_attachment(b"MZ\x90\x00" + bytes(60), maintype="application", subtype="pdf",
                       filename="invoice.pdf")  # fmt: skip
    send(fresh, engine, (msg.as_string(), "support@example.com"))
    settled(engine, DispatchStatus.DELIVERED)
    key = key_of(engine, "<files@customer.example>", "web")
    data = fresh.http.bodies[key]["data"]
    with Session(engine) as session:
        rows = session.execute(
            select(
                Attachment.id,
                Attachment.filename,
                Attachment.content_type,
                Attachment.sniffed_type,
                Attachment.type_mismatch,
                Attachment.size,
                Attachment.scan_status,  # null: scanning is off
                Attachment.text_status,
                Attachment.text_excerpt,
            ).order_by(Attachment.position)
        ).all()
        email_id = session.scalar(select(Email.id))
    assert data["email_id"] == email_id
    # Each with where its text is: none yet (the text queue is not served here).
    assert data["attachments"] == [{**row._asdict(), "text_url": None} for row in rows]
    # Handed off inline, the body was built from the values inserted: it is the body a
    # task builds from the stored rows (the same document, bar its timestamp).
    row = dispatches(engine)["<files@customer.example>"]
    with Session(engine) as session:
        stored = document(stored_fields(session, email_id), row.id, key, "web")
    assert json.loads(stored)["data"] == data
    assert [a["filename"] for a in data["attachments"]] == ["report.pdf", "invoice.pdf"]
    assert [a["type_mismatch"] for a in data["attachments"]] == [False, True]


def test_http_500s_are_retried_until_the_handler_answers(fresh: Stack, engine: Engine) -> None:
    fresh.http.fail_first = 2
    send(
        fresh, engine, (mail("<r1@customer.example>", "support@example.com"), "support@example.com")
    )
    settled(engine, DispatchStatus.DELIVERED)
    (row,) = dispatches(engine).values()
    assert (row.attempts, row.last_status_code, row.last_error) == (3, 204, None)
    # The same key three times; the handler's own dedup keeps one.
    assert fresh.http.seen == {row.idempotency_key: 3}
    assert list(fresh.http.bodies) == [row.idempotency_key]


def test_a_dead_dispatch_is_a_dead_letter_that_replays_once(fresh: Stack, engine: Engine) -> None:
    fresh.http.always_fail = True
    send(
        fresh, engine, (mail("<d1@customer.example>", "support@example.com"), "support@example.com")
    )
    settled(engine, DispatchStatus.DEAD)
    (row,) = dispatches(engine).values()
    assert (row.attempts, row.last_status_code, row.last_error) == (3, 500, "http_500")
    with Session(engine) as session:
        letter = session.scalars(select(DeadLetter)).one()
    assert (letter.kind, letter.event_index, letter.status) == ("dispatch", -row.id, "open")
    assert letter.error_class == "dispatch_http_500"

    fresh.http.always_fail = False
    result = kave_with_settings(["dispatches", "replay", "--all-dead"], fresh.settings)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replayed 1: delivered 1" in result.stdout
    (row,) = dispatches(engine).values()
    assert (row.status, row.attempts) == ("delivered", 1)
    assert fresh.http.seen == {row.idempotency_key: 4}  # three failures, one replay
    with Session(engine) as session:
        assert session.scalars(select(DeadLetter.status)).one() == "replayed"
    # A second replay finds nothing dead: it never hands off again.
    again = kave_with_settings(["dispatches", "replay", str(row.id)], fresh.settings)
    assert "not_dead 1" in again.stdout
    assert fresh.http.seen == {row.idempotency_key: 4}


def test_the_sweep_publishes_a_dispatch_whose_publish_was_lost(
    fresh: Stack, engine: Engine
) -> None:
    send(
        fresh, engine, (mail("<s1@customer.example>", "support@example.com"), "support@example.com")
    )
    settled(engine, DispatchStatus.DELIVERED)
    # What a dispatcher killed between the commit and the publish leaves: a due pending row.
    with engine.begin() as conn:
        conn.execute(
            update(Dispatch).values(
                status="pending", attempts=0, delivered_at=None, next_attempt_at=func.now()
            )
        )
    producer = Celery("kave-test")
    producer.conf.update(celery_config(fresh.settings))
    producer.send_task(DISPATCH_SWEEP_TASK)
    settled(engine, DispatchStatus.DELIVERED)
    (row,) = dispatches(engine).values()
    # Handed over again under the same key: the handler's dedup count stays one email.
    assert fresh.http.seen == {row.idempotency_key: 2}
    assert len(fresh.http.bodies) == 1


_ = handoff_platform  # the module the platform worker runs (imported for its verify())


def test_the_signed_post_verifies_with_the_standard_webhooks_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dispatcher's real POST, received over HTTP and checked by the reference library,
    with a secret written without base64 padding (as some providers print them)."""
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode().rstrip("=")
    monkeypatch.setenv("PLATFORM_REFERENCE_HANDOFF_SECRET", secret)
    received: list[tuple[dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/mail"
        table = parse_routes(
            {
                "routes": [
                    {
                        "name": "web",
                        "handler": {
                            "http": {"url": url, "secret_env": "PLATFORM_REFERENCE_HANDOFF_SECRET"}
                        },
                    }
                ]
            }
        )
        handler = table.routes[0].handler
        assert isinstance(handler, HttpHandler)
        body = b'{"email": {"id": 42, "subject": "caf\xc3\xa9"}}'
        assert post_signed(handler.http, "dispatch-1-key", body) == 204
    finally:
        server.shutdown()
        server.server_close()
    [(headers, sent)] = received
    assert sent == body
    assert Webhook(secret).verify(sent, headers) == {"email": {"id": 42, "subject": "café"}}
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(os.urandom(32)).decode()).verify(sent, headers)
