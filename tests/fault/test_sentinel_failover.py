"""A Redis primary SIGKILLed under traffic; Sentinel promotes its replica.

Real processes: one redis-server primary, one replica, three ``redis-server
--sentinel``; a uvicorn receiver and a Celery worker configured with
``KAVE_REDIS_SENTINELS``. The scenario is :mod:`loadkit.failover`: batches sent as
Mandrill sends them; the replica cut off its primary for a moment while the workers are
paused; the primary killed; the replica promoted; the old primary back as a replica.

- With ``KAVE_REDIS_MIN_REPLICAS_ACK=1`` every batch answered 200 ends as exactly one
  stored email per message, batches refused meanwhile are stored once after their
  resend, and ``kave audit`` is clean.

The same run with ``0`` (the default) loses the batches answered 200 while the replica
was cut off (``python -m bench.failover_bench`` runs both modes at 500 emails; the
figures are in BENCHMARKS.md): what the setting is for, and what shows this test fails
without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from subprocess import Popen

import pytest
from sqlalchemy import Engine

from kave.devstack.processes import kill_group
from loadkit.failover import FailoverOutcome, FailoverPlan, FailoverRun
from loadkit.redis_topology import MASTER_NAME, sentinel_topology
from shared.db import make_engine
from shared.migrate import upgrade_to_head
from shared.objectstore import make_s3_client
from shared.settings import Settings
from tests import services
from tests.services import REPO, TEST_WEBHOOK_KEY, TEST_WEBHOOK_URL, child_env, derive_settings

pytestmark = pytest.mark.fault

PLAN = FailoverPlan(emails=100, batch_size=5, senders=2, partition_seconds=1.5, stream_seconds=5)


@pytest.fixture(scope="module")
def database(postgres_admin_url: str) -> Iterator[Engine]:
    """A database of its own: the run counts every row."""
    with services.fresh_database(postgres_admin_url) as url:
        upgrade_to_head(url)
        engine = make_engine(derive_settings_for_url(url))
        yield engine
        engine.dispose()


def derive_settings_for_url(database_url: str) -> Settings:
    return Settings(_env_file=None, env="test", database_url=database_url)


def failover(
    tmp_path: Path, base_settings: Settings, database: Engine, replicas_ack: int
) -> FailoverOutcome:
    with ExitStack() as exits:
        topology = exits.enter_context(sentinel_topology(tmp_path / "redis"))
        services.truncate_all(database)
        # A bucket of its own too: the audit compares every object with the rows.
        bucket = f"kave-failover-{uuid.uuid4().hex[:8]}"
        settings = derive_settings(
            base_settings,
            database_url=database.url.render_as_string(hide_password=False),
            # Sentinel names the primary; the URL gives the database (and would give
            # the password and the scheme).
            redis_url=f"redis://{MASTER_NAME}/0",
            redis_sentinels=topology.sentinel_addresses,
            redis_sentinel_master=MASTER_NAME,
            redis_min_replicas_ack=replicas_ack,
            queue_name=f"kave-failover-{uuid.uuid4().hex[:6]}",
            s3_bucket=bucket,
            visibility_timeout_seconds=8,
            task_time_limit_seconds=6,
            unacked_restore_interval_seconds=1,
            retry_backoff_max_seconds=2,
        )
        make_s3_client(settings).create_bucket(Bucket=bucket)
        receiver_url = exits.enter_context(
            services.receiver_process(settings, tmp_path / "receiver.log")
        )
        workers: list[Popen[bytes]] = []

        def start_worker() -> None:
            workers.append(services.spawn_worker(settings, tmp_path / "worker.log", concurrency=2))

        def restart_exited() -> list[str]:
            restarted = []
            for worker in list(workers):
                if worker.poll() is not None:
                    kill_group(worker.pid)
                    workers.remove(worker)
                    start_worker()
                    restarted.append(f"worker exited with {worker.returncode}")
            return restarted

        def pause(stop: bool) -> None:
            for worker in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGSTOP if stop else signal.SIGCONT)

        start_worker()
        exits.callback(lambda: list(map(services.stop_process, workers)))
        run = FailoverRun(
            topology=topology,
            settings=settings,
            receiver_url=receiver_url,
            engine=database,
            restart_workers=restart_exited,
            pause_workers=pause,
            env=child_env(settings),
            cwd=REPO,
            webhook_key=TEST_WEBHOOK_KEY,
            webhook_url=TEST_WEBHOOK_URL,
        )
        outcome = run.run(PLAN)
        print(json.dumps(outcome.figures()))
        return outcome


def test_with_replica_acknowledgement_every_200_is_stored_exactly_once(
    tmp_path: Path, base_settings: Settings, database: Engine
) -> None:
    outcome = failover(tmp_path, base_settings, database, replicas_ack=1)
    figures = outcome.figures()
    assert outcome.batches_accepted == PLAN.emails // PLAN.batch_size, figures
    assert outcome.emails_lost == 0, figures
    assert outcome.emails_stored_once == PLAN.emails, figures
    assert outcome.emails_stored_twice_or_more == 0, figures
    assert outcome.refusals, figures  # the failover was felt: 503s, then resent
    assert outcome.audit_clean, outcome.audit_output
