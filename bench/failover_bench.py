"""A Redis failover under traffic, with and without replica acknowledgement: what is lost.

``python -m bench.failover_bench --emails 500`` runs :mod:`loadkit.failover` (the fault
test's scenario, at the issue's size) once with ``KAVE_REDIS_MIN_REPLICAS_ACK=1`` and
once with ``0``, each on a fresh topology (a primary, a replica, three Sentinels: the
machine's redis-server), a scratch PostgreSQL database, a moto S3 server, a uvicorn
receiver and a Celery worker, all configured with Sentinel; and prints, per mode, the
emails sent, stored once, stored twice, lost, the 503s Mandrill would have retried, and
how long the failover took. ``--partition-seconds`` is how long the replica is cut off
its primary (with the workers paused, a backlog) before the primary is SIGKILLed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

from bench import stack
from kave import devstack
from kave.devstack.processes import kill_group
from loadkit.failover import FailoverOutcome, FailoverPlan, FailoverRun
from loadkit.payloads import BENCH_WEBHOOK_KEY, BENCH_WEBHOOK_URL
from loadkit.redis_topology import MASTER_NAME, sentinel_topology
from shared.db import make_engine
from shared.objectstore import make_s3_client
from shared.settings import Settings


def run_mode(tmp: Path, endpoint: str, plan: FailoverPlan, replicas_ack: int) -> FailoverOutcome:
    with ExitStack() as exits:
        topology = exits.enter_context(sentinel_topology(tmp / f"redis-{replicas_ack}"))
        database_url = exits.enter_context(stack.postgres_database(tmp))
        bucket = f"kave-failover-{uuid.uuid4().hex[:8]}"
        settings = Settings(
            _env_file=None,
            env="test",
            database_url=database_url,
            redis_url=f"redis://{MASTER_NAME}/0",
            redis_sentinels=topology.sentinel_addresses,
            redis_sentinel_master=MASTER_NAME,
            redis_min_replicas_ack=replicas_ack,
            object_store="s3",
            s3_bucket=bucket,
            s3_endpoint_url=endpoint,
            s3_access_key_id="bench",
            s3_secret_access_key="bench",  # noqa: S106 - moto accepts anything
            mandrill_webhook_urls=[BENCH_WEBHOOK_URL],
            mandrill_webhook_keys=[BENCH_WEBHOOK_KEY],
            queue_name="kave-failover",
            visibility_timeout_seconds=8,
            task_time_limit_seconds=6,
            unacked_restore_interval_seconds=1,
            retry_backoff_max_seconds=2,
            log_format="json",
        )
        make_s3_client(settings).create_bucket(Bucket=bucket)
        engine = make_engine(settings)
        exits.callback(engine.dispose)
        env = devstack.child_env(settings)
        receiver_url, _ = exits.enter_context(
            stack.uvicorn("receiver.app:create_app", env, tmp / "receiver.log", workers=1)
        )
        workers: list[subprocess.Popen[bytes]] = []

        def start_worker() -> None:
            workers.append(
                devstack.start_celery_worker(
                    "worker.main",
                    settings.queue_name,
                    env,
                    tmp / f"worker-{replicas_ack}.log",
                    concurrency=2,
                    node=f"failover-{uuid.uuid4().hex[:6]}",
                    cwd=stack.REPO,
                )
            )

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
        exits.callback(lambda: list(map(devstack.stop_process, workers)))
        return FailoverRun(
            topology=topology,
            settings=settings,
            receiver_url=receiver_url,
            engine=engine,
            restart_workers=restart_exited,
            pause_workers=pause,
            env=env,
            cwd=stack.REPO,
            webhook_key=BENCH_WEBHOOK_KEY,
            webhook_url=BENCH_WEBHOOK_URL,
        ).run(plan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--partition-seconds", type=float, default=1.5)
    parser.add_argument("--stream-seconds", type=float, default=15.0)
    parser.add_argument("--modes", default="1,0", help="MIN_REPLICAS_ACK values to run")
    args = parser.parse_args()
    plan = FailoverPlan(
        emails=args.emails,
        batch_size=args.batch_size,
        partition_seconds=args.partition_seconds,
        stream_seconds=args.stream_seconds,
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="kave-failover-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)  # an embedded PostgreSQL runs as its own user
        with stack.s3_server(tmp / "moto.log") as endpoint:
            for mode in (int(value) for value in args.modes.split(",")):
                outcome = run_mode(tmp, endpoint, plan, mode)
                results[f"KAVE_REDIS_MIN_REPLICAS_ACK={mode}"] = outcome.figures()
                print(f"KAVE_REDIS_MIN_REPLICAS_ACK={mode}", json.dumps(outcome.figures()))
    print(json.dumps({"plan": vars(plan), "results": results}, indent=2))


if __name__ == "__main__":
    main()
