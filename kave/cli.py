"""The ``kave`` command: run the pipeline, send test batches, migrate, look at results."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from kave import handoff, keys, lifecycle, recovery, users
from shared.settings import Settings, SettingsError

RUN_ENV_FILE = Path("var/run.env")


def load_settings() -> Settings:
    """Settings from the environment and ``.env``, plus what a running ``kave run`` wrote."""
    env_files = [".env", str(RUN_ENV_FILE)] if RUN_ENV_FILE.exists() else [".env"]
    return Settings(_env_file=env_files)


def _cmd_run(args: argparse.Namespace) -> int:
    from kave.run import run_pipeline

    return run_pipeline(
        Settings(),
        var_dir=Path(args.var_dir),
        port=args.port,
        flower_port=args.flower_port,
        api_port=args.api_port,
    )


def _cmd_send(args: argparse.Namespace) -> int:
    from kave.send import send_file

    return send_file(load_settings(), Path(args.file), target_url=args.to)


def _cmd_migrate(_args: argparse.Namespace) -> int:
    from shared.migrate import upgrade_to_head

    settings = load_settings()
    settings.require_process("migrate")
    upgrade_to_head(settings.require_database_url())
    print("database schema is up to date")
    return 0


def _cmd_emails(args: argparse.Namespace) -> int:
    from kave.inspect import print_emails

    return print_emails(load_settings(), limit=args.limit)


def _cmd_deliveries(args: argparse.Namespace) -> int:
    from kave.inspect import print_deliveries

    return print_deliveries(load_settings(), limit=args.limit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kave", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="start receiver, API, worker and Flower, restarting any that crashes "
        "(embedded PostgreSQL/Redis when not configured); the worker gets the variables "
        "the hand-off routes' secret_env name",
    )
    run.add_argument("--port", type=int, default=8000, help="receiver port (default 8000)")
    run.add_argument(
        "--api-port",
        type=int,
        default=8001,
        help="management API port, when the api package is installed (default 8001)",
    )
    run.add_argument("--flower-port", type=int, default=5555, help="Flower port (default 5555)")
    run.add_argument("--var-dir", default="var", help="where embedded data lives (default ./var)")
    run.set_defaults(handler=_cmd_run)

    send = commands.add_parser("send", help="post a correctly signed Mandrill batch")
    send.add_argument(
        "file", help="an .eml message, or a JSON file holding a mandrill_events array"
    )
    send.add_argument(
        "--to",
        default=None,
        help="where to post (default: the first registered webhook URL, which is signed)",
    )
    send.set_defaults(handler=_cmd_send)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_cmd_migrate)

    emails = commands.add_parser("emails", help="list stored emails with their attachments")
    emails.add_argument("--limit", type=int, default=10)
    emails.set_defaults(handler=_cmd_emails)

    deliveries = commands.add_parser("deliveries", help="list received webhook deliveries")
    deliveries.add_argument("--limit", type=int, default=10)
    deliveries.set_defaults(handler=_cmd_deliveries)

    recovery.register(commands, load_settings)
    users.register(commands, load_settings)
    keys.register(commands, load_settings)
    lifecycle.register(commands, load_settings)
    handoff.register(commands, load_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except SettingsError as exc:
        print(f"kave: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"kave: invalid configuration: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
