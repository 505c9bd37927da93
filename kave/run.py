"""``kave run``: the whole pipeline on one machine, in the foreground.

Starts embedded PostgreSQL and Redis when no URL is configured, applies migrations,
then runs the receiver and the management API (two uvicorns), one worker (celery, with
beat) and Flower as child processes with the same settings. It supervises them like a
process manager: a child that crashes is restarted with backoff while the others keep
serving. Ctrl-C (or SIGTERM) stops them all.

Children get the settings, not this process's ``KAVE_*`` variables, with one exception:
the worker also gets each variable a hand-off route's ``secret_env`` names (they are not
settings, and it signs with them), from the environment or, as settings are, from
``.env``. A routes file the worker would refuse, one of those variables missing
included, stops ``kave run`` before anything starts.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path

from dotenv import dotenv_values

import kave
from kave.devstack import (
    EmbeddedPostgres,
    EmbeddedRedis,
    celery_worker_command,
    child_env,
    derive_settings,
    flower_command,
    free_port,
    uvicorn_command,
)
from kave.devstack.supervisor import Supervisor
from kave.devstack.var import dev_secret, write_env_file
from shared.migrate import upgrade_to_head
from shared.settings import Settings
from shared.webhook import WEBHOOK_PATH
from worker.handoff.routes import RouteError, load_routes, secret_envs

RECEIVER_APP = "receiver.app:create_app"
API_APP = "api.app:create_app"
EXAMPLE = Path("tests/fixtures/mandrill/inbound_with_multiple_attachments.json")


def _effective_settings(
    settings: Settings, var_dir: Path, port: int, database_url: str, redis_url: str
) -> tuple[Settings, dict[str, str]]:
    """The settings every child runs with, and the part of them that ``var/run.env``
    records for other ``kave`` commands: what ``kave run`` chose, not what was configured."""
    chosen: dict[str, object] = {"database_url": database_url, "redis_url": redis_url}
    if settings.object_store == "local":
        chosen["local_store_dir"] = (
            settings.local_store_dir.resolve()
            if "KAVE_LOCAL_STORE_DIR" in os.environ
            else (var_dir / "objects").resolve()
        )
    if not settings.mandrill_webhook_urls:
        chosen["mandrill_webhook_urls"] = [f"http://127.0.0.1:{port}{WEBHOOK_PATH}"]
    if not settings.mandrill_webhook_keys:
        chosen["mandrill_webhook_keys"] = [dev_secret(var_dir / "dev-webhook-key")]
    changes = dict(chosen)
    if settings.jwt_secret_key is None:
        # Kept under ./var like the webhook key, so API tokens outlive a restart.
        changes["jwt_secret_key"] = dev_secret(var_dir / "dev-jwt-secret", nbytes=48)
    effective = derive_settings(settings, **changes)
    environment = effective.as_environment()
    recorded = {f"KAVE_{name.upper()}" for name in chosen}
    return effective, {name: environment[name] for name in sorted(recorded)}


def _route_secrets(settings: Settings) -> tuple[str, ...]:
    """The variables the hand-off routes read their secrets from, which the worker gets
    although they are ``KAVE_*`` variables that are not settings; :class:`RouteError`
    (naming every one missing) when the worker would refuse the routes file."""
    if settings.handoff_routes_file is None:
        return ()
    return secret_envs(load_routes(settings.handoff_routes_file))


def _example_path() -> str:
    """The repository's sample batch, as a path the user can type from here."""
    example = Path(kave.__file__).resolve().parents[1] / EXAMPLE
    try:
        return str(example.relative_to(Path.cwd()))
    except ValueError:
        return str(example)


def _dotenv_into_environment(path: Path) -> None:
    """The ``KAVE_*`` variables of ``.env`` that the environment does not set, into it:
    Settings read that file too (the environment first), so settings keep their values,
    and a route's secret kept there reaches the worker as a setting would."""
    for name, value in dotenv_values(path).items():
        if name.startswith("KAVE_") and value is not None and name not in os.environ:
            os.environ[name] = value


def run_pipeline(
    settings: Settings, *, var_dir: Path, port: int, flower_port: int, api_port: int
) -> int:
    var_dir = var_dir.resolve()
    env_file = var_dir / "run.env"
    _dotenv_into_environment(Path(".env"))
    try:
        # Checked before anything starts: the worker would refuse the file and be
        # restarted forever, while the receiver accepted mail nothing processed.
        route_secrets = _route_secrets(settings)
    except RouteError as exc:
        print(f"kave: {exc}", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        stack.callback(print, "Kave stopped.")
        database_url = settings.database_url
        if not database_url:
            print("starting embedded PostgreSQL in", var_dir / "postgres")
            embedded_pg = EmbeddedPostgres(var_dir / "postgres")
            stack.callback(embedded_pg.stop)
            database_url = embedded_pg.start()
        redis_url = settings.redis_url
        if not redis_url:
            embedded_redis = EmbeddedRedis(var_dir / "redis", port=free_port(6390))
            print("starting embedded Redis in", var_dir / "redis")
            stack.callback(embedded_redis.stop)
            redis_url = embedded_redis.start()

        print("applying migrations")
        upgrade_to_head(database_url)

        effective, chosen = _effective_settings(settings, var_dir, port, database_url, redis_url)
        # Only a password made up here is shown: a configured one is the operator's secret.
        if settings.flower_basic_auth:
            flower_auth = settings.flower_basic_auth.get_secret_value()
            flower_shown = "as configured"
        else:
            flower_auth = "kave:" + dev_secret(var_dir / "dev-flower-password")
            flower_shown = f"user:password {flower_auth}"
        stack.callback(env_file.unlink, missing_ok=True)
        write_env_file(env_file, chosen)

        supervisor = Supervisor(child_env(effective, FLOWER_BASIC_AUTH=flower_auth))
        stack.callback(supervisor.stop)
        supervisor.add("receiver", uvicorn_command(RECEIVER_APP, port))
        supervisor.add("api", uvicorn_command(API_APP, api_port))
        supervisor.add(
            "worker",
            celery_worker_command(
                "worker.main",
                # On a laptop one worker serves the mail and the attachment text queues
                # (production runs text workers of their own: compose's text-worker).
                f"{effective.queue_name},{effective.text_queue_name}",
                concurrency=effective.worker_concurrency,
                node="kave",
                beat_schedule=var_dir / "celerybeat-schedule",
            ),
            # Only the worker hands off, so only it sees the routes' secrets.
            env=child_env(effective, keep=route_secrets, FLOWER_BASIC_AUTH=flower_auth),
        )
        supervisor.add("flower", flower_command(flower_port))
        supervisor.start()

        webhook_key = chosen.get("KAVE_MANDRILL_WEBHOOK_KEYS", "(as configured)")
        print(
            "\nKave is running. Ctrl-C stops everything; a process that crashes is restarted.\n"
            f"  receiver      http://127.0.0.1:{port}\n"
            f"  API           http://127.0.0.1:{api_port}  (docs: /api/v1/docs)\n"
            f"  webhook URL   {','.join(effective.mandrill_webhook_urls)}\n"
            f"  webhook key   {webhook_key}\n"
            f"  Flower        http://127.0.0.1:{flower_port}  ({flower_shown})\n"
            f"  data          {var_dir}\n"
            f"  try           kave send {_example_path()} && kave emails\n",
            flush=True,
        )
        supervisor.run()
    return 0
