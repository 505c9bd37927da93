"""What ``WAIT 1`` costs the receiver: throughput with and without a replica's acknowledgement.

``python -m bench.replica_ack_bench`` starts a primary and one replica (the machine's
redis-server, AOF ``everysec``, on this machine: the replica's acknowledgement costs a
loopback round trip, a lower bound for a replica on another host) and two receivers on
the same primary, one with ``KAVE_REDIS_MIN_REPLICAS_ACK=0`` and one with ``1``, each
one uvicorn process. wrk (32 connections, the same signed 8 KB batch) loads them in
alternating rounds, as the receiver bench loads the receiver and its ceiling, so a burst
of someone else's load hits both alike; the Redis database is emptied every quarter
second (as workers would, by taking the bodies) while a round runs. Prints requests/s,
p50 and p99 per round and the medians, and the cost as the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

import psutil

from bench import stack
from bench.receiver_bench import Server, WrkRun
from kave import devstack
from loadkit import payloads
from loadkit.redis_topology import sentinel_topology
from shared.settings import Settings


def receiver_settings(port: int, tmp: Path, replicas_ack: int) -> Settings:
    return Settings(
        _env_file=None,
        env="test",
        redis_url=f"redis://127.0.0.1:{port}/0",
        redis_min_replicas_ack=replicas_ack,
        object_store="local",
        local_store_dir=tmp / "objects",
        mandrill_webhook_urls=[payloads.BENCH_WEBHOOK_URL],
        mandrill_webhook_keys=[payloads.BENCH_WEBHOOK_KEY],
        queue_name="kave-bench",
        log_level="WARNING",
        log_format="json",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    results: dict[str, list[WrkRun]] = {"0": [], "1": []}
    with ExitStack() as exits:
        tmp = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="kave-ack-bench-")))
        topology = exits.enter_context(sentinel_topology(tmp / "redis", sentinels=0))
        port = topology.primary.port
        redis_url = f"redis://127.0.0.1:{port}/0"
        signed = payloads.sign(payloads.email_events("8KB", seed=1))
        body_file = tmp / "body"
        body_file.write_bytes(signed.body)
        signature = signed.headers["X-Mandrill-Signature"]
        servers = {}
        for acks in (0, 1):
            env = devstack.child_env(receiver_settings(port, tmp, acks))
            base, process = exits.enter_context(
                stack.uvicorn("receiver.app:create_app", env, tmp / f"receiver-{acks}.log", 1)
            )
            servers[str(acks)] = Server(f"ack={acks}", base, psutil.Process(process.pid), redis_url)
        for number in range(args.rounds):
            for mode, server in servers.items():
                run = server.run(body_file, signature, args.seconds)
                results[mode].append(run)
                rps = run.requests / run.seconds
                cpu_ms = 1000 * run.cpu_seconds / max(run.requests, 1)
                print(
                    f"round {number + 1} MIN_REPLICAS_ACK={mode}: {rps:7.0f} req/s  "
                    f"p50 {run.p50_ms:5.1f} ms  p99 {run.p99_ms:5.1f} ms  "
                    f"errors {run.errors}  cpu {cpu_ms:.2f} ms/req"
                )
    summary: dict[str, object] = {}
    medians: dict[str, float] = {}
    for mode, runs in results.items():
        medians[mode] = statistics.median(r.requests / r.seconds for r in runs)
        summary[f"MIN_REPLICAS_ACK={mode}"] = {
            "rps_median": round(statistics.median(r.requests / r.seconds for r in runs)),
            "p50_ms_median": round(statistics.median(r.p50_ms for r in runs), 1),
            "p99_ms_median": round(statistics.median(r.p99_ms for r in runs), 1),
            "cpu_ms_per_request_median": round(
                statistics.median(1000 * r.cpu_seconds / max(r.requests, 1) for r in runs), 3
            ),
            "errors": sum(r.errors for r in runs),
        }
    summary["throughput_ratio_wait_1_over_0"] = round(medians["1"] / medians["0"], 3)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
