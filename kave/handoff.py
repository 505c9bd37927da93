"""``kave routes validate|test`` and ``kave dispatches``: the hand-off to the platform.

``routes test`` answers "which handler would get a mail to this address?" from the
configured routes file, without touching the database.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.settings import Settings
from worker.handoff.routes import (
    MatchInput,
    RouteError,
    RouteTable,
    environment_problems,
    load_routes,
    read_routes,
)

Loader = Callable[[], Settings]


def register(commands: Any, load_settings: Loader) -> None:
    """Add ``routes`` and ``dispatches`` to the ``kave`` parser."""

    def handler(function: Callable[[argparse.Namespace, Settings], int]) -> Any:
        return lambda args: function(args, load_settings())

    routes = commands.add_parser("routes", help="check the hand-off routes file")
    actions = routes.add_subparsers(dest="routes_command", required=True)
    validate_help = (
        "load and validate the routes file, and check that this environment holds every "
        "secret_env it names (exit 1: one is missing or malformed, each is named; 2: the "
        "file is invalid)"
    )
    validate = actions.add_parser("validate", help=validate_help, description=validate_help)
    validate.add_argument("--file", default=None, help="default: KAVE_HANDOFF_ROUTES_FILE")
    validate.set_defaults(handler=handler(_validate))
    test = actions.add_parser("test", help="which route a mail to ADDRESS would match")
    test.add_argument("address", help="the envelope recipient, e.g. inbox+ticket-42@example.com")
    test.add_argument("--sender", default=None, help="the From address")
    test.add_argument("--subject", default=None)
    test.add_argument(
        "--auto-submitted", action="store_true", help="as an auto-reply or bounce would be"
    )
    test.add_argument("--bulk", action="store_true", help="as list or newsletter mail would be")
    trust = test.add_mutually_exclusive_group()
    trust.add_argument(
        "--sender-trust",
        choices=["pass", "fail", "none", "unknown"],
        default=None,
        help="the From: verdict to assume (default: unknown, as when nothing is proven)",
    )
    trust.add_argument(
        "--eml",
        default=None,
        help="a message file (.eml): its From:, Subject and verdict, verified now with "
        "this environment's DNS (KAVE_SENDER_TRUST_DNS)",
    )
    test.add_argument("--file", default=None, help="default: KAVE_HANDOFF_ROUTES_FILE")
    test.set_defaults(handler=handler(_test))

    dispatches = commands.add_parser("dispatches", help="hand-offs of emails to handlers")
    verbs = dispatches.add_subparsers(dest="dispatches_command", required=True)
    listing = verbs.add_parser("list", help="list dispatches, newest first")
    listing.add_argument(
        "--status", default=None, choices=["pending", "delivered", "dead", "unrouted"]
    )
    listing.add_argument("--email", type=int, default=None, help="only this email id")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=handler(_list))
    replay = verbs.add_parser("replay", help="replay dead dispatches (by id, or --all-dead)")
    replay.add_argument("ids", nargs="*", type=int, help="dispatch ids")
    replay.add_argument("--all-dead", action="store_true", help="every dead dispatch")
    replay.set_defaults(handler=handler(_replay))


def _table(
    args: argparse.Namespace, settings: Settings, *, with_secrets: bool = True
) -> RouteTable | None:
    """The routes file's table; ``with_secrets``: refused, like a worker refuses it, when
    this environment lacks a secret it names."""
    path = Path(args.file) if args.file else settings.handoff_routes_file
    if path is None:
        print("kave: no routes file (set KAVE_HANDOFF_ROUTES_FILE or pass --file)")
        return None
    try:
        return load_routes(path) if with_secrets else read_routes(path)
    except RouteError as exc:
        print(f"kave: {exc}")
        return None


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 2 for a file no worker could load whatever its environment; 1 for a valid
    file this environment cannot run (a worker started here would refuse it: better
    found by the check run before a deploy than by a worker that will not start)."""
    table = _table(args, settings, with_secrets=False)
    if table is None:
        return 2
    for position, route in enumerate(table.routes, start=1):
        kind = "catch-all" if route.is_catch_all else "route"
        print(f"  {position}. {route.name} ({kind}) -> {route.describe()}")
    if not any(route.is_catch_all for route in table.routes):
        print("note: no catch-all route; mail no route matches is recorded as unrouted")
    # Every one at once, so a deploy is fixed in one go.
    problems = environment_problems(table)
    for problem in problems:
        print(f"kave: {problem}")
    if problems:
        print(
            f"{len(table.routes)} routes valid, but this environment lacks what "
            f"{len(problems)} of their handlers need (above): a worker started here would "
            "refuse the file"
        )
        return 1
    print(f"{len(table.routes)} routes OK")
    return 0


def _test(args: argparse.Namespace, settings: Settings) -> int:
    from worker.ingest.derive import mailbox_hash

    table = _table(args, settings)
    if table is None:
        return 2
    sender, subject, verdict = args.sender, args.subject, args.sender_trust or "unknown"
    if args.eml:
        checked = _verify_eml(Path(args.eml), args.address, settings)
        if checked is None:
            return 2
        sender, subject, verdict, why = checked
        print(f"sender_trust: {verdict} ({why}), From: {sender or '-'}")
    else:
        how = "given" if args.sender_trust else "assumed: nothing proven; --eml verifies a message"
        print(f"sender_trust: {verdict} ({how})")
    email = MatchInput(
        recipient=args.address,
        sender=sender,
        subject=subject,
        mailbox_hash=mailbox_hash(args.address),
        auto_submitted=args.auto_submitted,
        bulk=args.bulk,
        sender_trust=verdict,
    )
    route = table.first_match(email)
    if route is None:
        print("no route matches: the email would be recorded as unrouted")
        return 1
    print(f"{route.name} -> {route.describe()}")
    return 0


def _verify_eml(
    path: Path, recipient: str, settings: Settings
) -> tuple[str | None, str | None, str, str] | None:
    """A message file's From: address, Subject, and sender-trust verdict with its
    reason, verified as a worker would (its DNS, its timeout)."""
    from worker.ingest import parsing
    from worker.ingest.trust import SenderTrust

    try:
        raw = path.read_bytes()
    except OSError as exc:
        print(f"kave: cannot read {path} ({exc.strerror})")
        return None
    event = {
        "event": "inbound",
        "msg": {"raw_msg": raw.decode("utf-8", "replace"), "email": recipient},
    }
    try:
        email = parsing.parse_inbound(event)
    except parsing.PermanentEventError as exc:
        print(f"kave: {path} is not a message Kave would store ({exc})")
        return None
    trust = SenderTrust(settings.sender_trust_dns, settings.sender_trust_dns_timeout_seconds)
    verdict, reasons = trust.verdict(email)
    return email.from_address, email.subject, verdict, str(reasons.get("verdict"))


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from shared.models import Dispatch
    from worker.resources import ingest_context

    query = select(Dispatch).order_by(Dispatch.id.desc()).limit(args.limit)
    if args.status:
        query = query.where(Dispatch.status == args.status)
    if args.email is not None:
        query = query.where(Dispatch.email_id == args.email)
    with ingest_context(settings).session_factory() as session:
        rows = session.scalars(query).all()
    if not rows:
        print("no dispatches")
        return 0
    for row in rows:
        print(
            f"{row.id:>6}  {row.status:<9} email={row.email_id} route={row.route or '-'} "
            f"attempts={row.attempts} code={row.last_status_code or '-'} "
            f"error={row.last_error or '-'} key={row.idempotency_key[:16]}"
        )
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from worker.celery_app import create_celery_app
    from worker.handoff import dispatch
    from worker.handoff.tasks import dispatch_context
    from worker.resources import worker_context

    if bool(args.ids) == args.all_dead:
        print("kave: give dispatch ids or --all-dead (not both)")
        return 2
    create_celery_app(settings).set_current()
    ctx = dispatch_context(worker_context(settings))
    if ctx is None:
        print("kave: the hand-off is off (KAVE_HANDOFF_ROUTES_FILE is not set)")
        return 2
    ids = list(args.ids)
    if args.all_dead:
        with ctx.session_factory() as session:
            ids = dispatch.dead_dispatch_ids(session)
    results: dict[str, int] = {}
    for dispatch_id in ids:
        outcome = dispatch.replay(ctx, dispatch_id)
        results[outcome] = results.get(outcome, 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(results.items())) or "nothing to replay"
    print(f"replayed {len(ids)}: {summary}")
    return 0 if not results.get("dead") else 1
