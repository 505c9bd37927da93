"""``kave run``: the whole pipeline on one machine, in the foreground.

Starts embedded PostgreSQL and Redis when no URL is configured, applies migrations,
then runs the receiver (uvicorn), one worker (celery) and Flower as child processes
with the same settings, and stops them all on Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from kave.devstack import EmbeddedPostgres, EmbeddedRedis, free_port, write_env_file
from shared.migrate import upgrade_to_head
from shared.settings import Settings

WEBHOOK_PATH = "/api/v1/webhooks/mailchimp"


def _dev_secret(path: Path) -> str:
    """A random secret kept under ./var so it survives restarts of `kave run`."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _effective_env(
    settings: Settings, var_dir: Path, port: int, database_url: str, redis_url: str
) -> dict[str, str]:
    env = {"KAVE_DATABASE_URL": database_url, "KAVE_REDIS_URL": redis_url}
    if settings.object_store == "local":
        env["KAVE_LOCAL_STORE_DIR"] = str(
            settings.local_store_dir.resolve()
            if "KAVE_LOCAL_STORE_DIR" in os.environ
            else (var_dir / "objects").resolve()
        )
    if not settings.mandrill_webhook_urls:
        env["KAVE_MANDRILL_WEBHOOK_URLS"] = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    if not settings.mandrill_webhook_keys:
        env["KAVE_MANDRILL_WEBHOOK_KEYS"] = _dev_secret(var_dir / "dev-webhook-key")
    return env


def run_pipeline(settings: Settings, *, var_dir: Path, port: int, flower_port: int) -> int:
    var_dir = var_dir.resolve()
    embedded_pg: EmbeddedPostgres | None = None
    embedded_redis: EmbeddedRedis | None = None
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    env_file = var_dir / "run.env"
    try:
        database_url = settings.database_url
        if not database_url:
            print("starting embedded PostgreSQL in", var_dir / "postgres")
            embedded_pg = EmbeddedPostgres(var_dir / "postgres")
            database_url = embedded_pg.start()
        redis_url = settings.redis_url
        if not redis_url:
            embedded_redis = EmbeddedRedis(var_dir / "redis", port=free_port(6390))
            print("starting embedded Redis in", var_dir / "redis")
            redis_url = embedded_redis.start()

        print("applying migrations")
        upgrade_to_head(database_url)

        kave_env = _effective_env(settings, var_dir, port, database_url, redis_url)
        flower_auth = (
            settings.flower_basic_auth.get_secret_value()
            if settings.flower_basic_auth
            else "kave:" + _dev_secret(var_dir / "dev-flower-password")
        )
        write_env_file(env_file, kave_env)
        child_env = {**os.environ, **kave_env, "FLOWER_BASIC_AUTH": flower_auth}
        python = sys.executable
        commands = {
            "receiver": [
                python, "-m", "uvicorn", "receiver.app:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            ],
            # One worker with embedded beat (-B, fine for a single worker) runs the
            # periodic reconciliation; -q drops Celery's plain-text banner.
            "worker": [
                python, "-m", "celery", "-A", "worker.main", "-q", "worker", "-B",
                "--schedule", str(var_dir / "celerybeat-schedule"),
                "--loglevel", "INFO", "--concurrency", str(settings.worker_concurrency),
                "-Q", settings.queue_name,
            ],
            "flower": [
                python, "-m", "celery", "-A", "worker.flower", "flower",
                "--address=127.0.0.1", f"--port={flower_port}",
            ],
        }  # fmt: skip
        for name, command in commands.items():
            # A session of their own: Ctrl-C reaches `kave run` only, which then stops
            # each child once, in order (a second SIGINT would make Celery cold-stop).
            children.append(
                (name, subprocess.Popen(command, env=child_env, start_new_session=True))
            )

        webhook_url = kave_env.get("KAVE_MANDRILL_WEBHOOK_URLS") or ",".join(
            settings.mandrill_webhook_urls
        )
        webhook_key = kave_env.get("KAVE_MANDRILL_WEBHOOK_KEYS", "(as configured)")
        print(
            "\nKave is running. Ctrl-C stops everything.\n"
            f"  receiver      http://127.0.0.1:{port}  (docs: /api/v1/docs)\n"
            f"  webhook URL   {webhook_url}\n"
            f"  webhook key   {webhook_key}\n"
            f"  Flower        http://127.0.0.1:{flower_port}  (user:password {flower_auth})\n"
            f"  data          {var_dir}\n"
            "  try           kave send ../shared/fixtures/mandrill/inbound.json && kave emails\n",
            flush=True,
        )
        return _wait(children)
    finally:
        _stop(children)
        env_file.unlink(missing_ok=True)
        if embedded_redis:
            embedded_redis.stop()
        if embedded_pg:
            embedded_pg.stop()
        print("Kave stopped.")


def _wait(children: list[tuple[str, subprocess.Popen[bytes]]]) -> int:
    stopping = False

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    while not stopping:
        for name, process in children:
            if process.poll() is not None:
                print(f"kave: {name} exited with status {process.returncode}; stopping")
                return 1
        time.sleep(0.2)
    return 0


def _stop(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, process in children:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 30
    for name, process in children:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            print(f"kave: {name} did not stop in time; killing it")
            process.kill()
