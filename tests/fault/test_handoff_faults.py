"""The hand-off under faults: the dispatcher SIGKILLed mid-run, the HTTP handler down for
30 s, and random 500 answers, all at once, through real processes.

Acceptance (issue 10): every email reaches its handler at least once, each (email, route)
key is seen, and the handler's own dedup count shows no email lost. (That a dead-lettered
dispatch replays once is tests/worker/test_handoff_dispatch.py.)

Runs on the session's PostgreSQL and Redis (nothing here kills them): the dispatcher is a
worker with embedded beat (the outbox sweep) started and killed by this test.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from shared.models import DeadLetter, Dispatch, DispatchStatus
from shared.settings import Settings
from tests import services
from tests.handoff_platform import HttpPlatform
from tests.services import REPO, child_env, derive_settings, wait_until
from tests.webhooks import post_events, wait_for_deliveries

pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("clean_db")]

SECRET_ENV = "PLATFORM_FAULT_HANDOFF_SECRET"
EMAILS = 40
BATCH = 5
OUTAGE_SECONDS = 30


def spawn_dispatcher(settings: Settings, log_path: Path, schedule: Path) -> subprocess.Popen[bytes]:
    """A real worker with embedded beat, in a session of its own (so it can be killed whole)."""
    node = f"dispatcher-{uuid.uuid4().hex[:6]}"
    command = [
        sys.executable, "-m", "celery", "-A", "worker.main", "worker", "-B", "-s", str(schedule),
        "--loglevel", "INFO", "--pool", "prefork", "--concurrency", "2",
        "-Q", settings.queue_name, "-n", f"{node}@%h", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=child_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    before = log_path.read_bytes().count(b"ready.")
    wait_until(lambda: log_path.read_bytes().count(b"ready.") > before, 60, node)
    return process


def sigkill(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # the main process, its children and beat
    process.wait(timeout=10)


@pytest.fixture
def http() -> Iterator[HttpPlatform]:
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    os.environ[SECRET_ENV] = secret
    with HttpPlatform(secret) as platform:
        yield platform


def mail(number: int) -> str:
    msg = EmailMessage()
    msg["From"] = f"customer{number}@customer.example"
    msg["To"] = "support@example.com"
    msg["Subject"] = f"Question {number}"
    msg["Message-ID"] = f"<fault-{number}@customer.example>"
    msg.set_content(f"Question number {number}.\n")
    return msg.as_string()


def test_dispatcher_killed_handler_down_and_random_500s_lose_nothing(
    base_settings: Settings, service_dir: Path, engine: Engine, http: HttpPlatform
) -> None:
    routes = service_dir / f"fault-routes-{uuid.uuid4().hex[:6]}.json"
    routes.write_text(
        json.dumps(
            {
                "routes": [
                    {
                        "name": "web",
                        "handler": {
                            "http": {
                                "url": http.url,
                                "secret_env": SECRET_ENV,
                                "timeout_seconds": 3,
                            }
                        },
                    }
                ]
            }
        )
    )
    settings = derive_settings(
        base_settings,
        queue_name=f"kave-handoff-fault-{uuid.uuid4().hex[:8]}",
        handoff_routes_file=routes,
        # A budget that outlives the outage: backoff at most 3 s, 40 attempts (~1.5 min).
        handoff_max_attempts=40,
        handoff_backoff_max_seconds=3,
        handoff_sweep_interval_seconds=2,
        # The kill may land mid-delivery (the worker hands off inline, right after storing):
        # its message comes back after the visibility timeout, short here as in tests/fault.
        visibility_timeout_seconds=25,
        task_time_limit_seconds=20,
        unacked_restore_interval_seconds=1,
        # The kill may also land between the broker handing a message over and the worker
        # recording it unacknowledged: that message is gone, and the beat's reconciliation
        # queues its delivery again from the receiver's ledger (shared/accepted.py).
        reconcile_after_seconds=10,
        reconcile_interval_seconds=3,
        worker_metrics_port=0,
    )
    http.fail_rate = 0.3
    log_path = service_dir / "handoff-fault-dispatcher.log"
    schedule = service_dir / f"beat-{uuid.uuid4().hex[:6]}"
    with services.receiver_process(settings, service_dir / "handoff-fault-receiver.log") as url:
        first = spawn_dispatcher(settings, log_path, schedule)
        second: subprocess.Popen[bytes] | None = None
        handed_before_kill = EMAILS
        try:
            delivery_ids = []
            for start in range(0, EMAILS, BATCH):
                batch = [
                    {
                        "event": "inbound",
                        "ts": 1764583200,
                        "msg": {"raw_msg": mail(n), "email": "support@example.com"},
                    }
                    for n in range(start, start + BATCH)
                ]
                response = post_events(url, json.dumps(batch))
                assert response.status_code == 200, response.text
                delivery_ids.append(response.json()["delivery_id"])

            # Mid-run: some emails handed off, others not yet.
            wait_until(lambda: len(http.bodies) >= 5, 60, "first hand-offs")
            sigkill(first)
            handed_before_kill = len(http.bodies)
            http.down()
            down_at = time.monotonic()
            second = spawn_dispatcher(settings, log_path, schedule)
            wait_for_deliveries(engine, delivery_ids, timeout=120)
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
            http.up()

            def all_delivered() -> bool:
                with Session(engine) as session:
                    open_rows = session.scalar(
                        select(func.count())
                        .select_from(Dispatch)
                        .where(Dispatch.status != DispatchStatus.DELIVERED)
                    )
                    total = session.scalar(select(func.count()).select_from(Dispatch))
                return total == EMAILS and open_rows == 0

            # Rows claimed by the killed dispatcher come back once their lease expires
            # (handler timeout + 30 s), through the beat sweep.
            wait_until(all_delivered, 180, "every dispatch delivered", interval=1)
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    sigkill(process)

    with Session(engine) as session:
        keys = set(session.scalars(select(Dispatch.idempotency_key)))
        attempts = list(session.scalars(select(Dispatch.attempts)))
        dead_letters = session.scalar(select(func.count()).select_from(DeadLetter))
    assert handed_before_kill < EMAILS  # the kill really came mid-run
    assert len(keys) == EMAILS
    assert set(http.seen) == keys  # each (email, route) key reached the handler
    assert set(http.bodies) == keys  # the handler's dedup count: no email lost
    assert len(http.bodies) == EMAILS
    assert http.bad_signatures == 0
    assert dead_letters == 0
    repeats = sum(http.seen.values()) - EMAILS
    print(
        f"handoff faults: {EMAILS} emails, {sum(attempts)} attempts, "
        f"{repeats} repeated hand-offs (500s and redelivery), max attempts {max(attempts)}, "
        f"{handed_before_kill} handed off before the kill"
    )
