"""``kave audit``, ``kave erase`` and ``kave purge``: thin shells over ``shared.lifecycle``.

Each prints what it does as it goes and a summary at the end; none prints an address or
any other erased or stored content.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from shared.db import make_engine, make_session_factory
from shared.lifecycle.objects import SessionFactory
from shared.objectstore import ObjectStore, make_object_store
from shared.settings import Settings

Loader = Callable[[], Settings]


def register(commands: Any, load_settings: Loader) -> None:
    """Add the lifecycle subcommands to the ``kave`` parser."""

    def handler(function: Callable[[argparse.Namespace, Settings], int]) -> Any:
        return lambda args: function(args, load_settings())

    audit = commands.add_parser(
        "audit",
        help="compare the object store with the rows; exit 1 on any inconsistency",
    )
    audit.add_argument(
        "--repair",
        action="store_true",
        help="remove unreferenced objects older than the grace period (never rows)",
    )
    audit.add_argument(
        "--grace",
        type=int,
        default=None,
        help="seconds; younger objects and deliveries are in flight, not inconsistent "
        "(default: KAVE_ORPHAN_GRACE_SECONDS for objects, KAVE_RECONCILE_AFTER_SECONDS + "
        "KAVE_RECONCILE_INTERVAL_SECONDS since the last attempt for unfinished deliveries)",
    )
    audit.set_defaults(handler=handler(_audit))

    erase = commands.add_parser(
        "erase",
        help="erase an email, or everything that mentions an address (GDPR), objects "
        "included, for good; see README 'Retention and erasure'",
    )
    selector = erase.add_mutually_exclusive_group(required=True)
    selector.add_argument("--address", help="an email address (matched case-insensitively)")
    selector.add_argument("--email", type=int, help="an email id")
    erase.set_defaults(handler=handler(_erase))

    purge = commands.add_parser(
        "purge",
        help="delete what is older than the retention policy (KAVE_RETENTION_*_DAYS)",
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="only count what each kind would remove now"
    )
    purge.set_defaults(handler=handler(_purge))


@contextmanager
def _resources(settings: Settings) -> Iterator[tuple[SessionFactory, ObjectStore]]:
    # These are operator-run batch jobs: an erasure by address reads every email's text
    # and the audit every key, which can outlast the statement timeout meant for workers.
    engine = make_engine(settings.model_copy(update={"database_statement_timeout_ms": 0}))
    try:
        yield make_session_factory(engine), make_object_store(settings)
    finally:
        engine.dispose()


def _say(message: str) -> None:
    print(message, flush=True)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from kave.audit import run_audit

    grace = settings.orphan_grace_seconds if args.grace is None else args.grace
    unfinished = (
        settings.reconcile_after_seconds + settings.reconcile_interval_seconds
        if args.grace is None
        else args.grace
    )
    with _resources(settings) as (sessions, store):
        report = run_audit(
            sessions,
            store,
            grace_seconds=grace,
            unfinished_grace_seconds=unfinished,
            repair=args.repair,
            progress=_say,
        )
    print(f"{report.objects_listed} objects listed; grace {grace} s")
    for kind, count in report.counts.items():
        repaired = report.repaired.get(kind)
        print(f"  {kind:<24} {count}" + (f" (repaired {repaired})" if repaired else ""))
        for sample in report.samples.get(kind, []):
            print(f"      {sample}")
    if report.clean:
        print("audit clean")
        return 0
    print("audit found inconsistencies", file=sys.stderr)
    return 1


def _erase(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from shared.lifecycle.erase import NothingToEraseError, erase, normalise_address
    from shared.redis_connect import redis_client

    if args.address is not None:
        try:
            normalise_address(args.address)
        except ValueError as exc:
            print(f"kave: {exc}", file=sys.stderr)
            return 2
    redis = redis_client(settings) if settings.redis_url else None
    with _resources(settings) as (sessions, store):
        try:
            result = erase(
                sessions,
                store,
                actor=f"cli:{getpass.getuser()}",
                grace_seconds=settings.orphan_grace_seconds,
                address=args.address,
                email_id=args.email,
                redis=redis,
            )
        except NothingToEraseError as exc:
            print(f"kave: {exc}", file=sys.stderr)
            return 1
        finally:
            if redis is not None:
                redis.close()
    counts = ", ".join(f"{kind} {count}" for kind, count in result.counts.items())
    print(f"erasure {result.erasure_id}: {counts}")
    if args.address is not None:
        print(
            "searched: the stored text of every email (addresses, headers, subject, bodies) "
            "and every event, read whole (no index says which bodies mention an address), "
            f"and the archives of {result.archives_searched} unresolved deliveries"
        )
    objects = result.objects
    print(
        f"objects deleted {objects.deleted}, still named by other rows {objects.still_referenced}"
    )
    if objects.deferred:
        # Never this erasure's objects (they go whatever their age): a purge's leftovers.
        print(
            f"{objects.deferred} objects an earlier purge queued were written in the last "
            f"{settings.orphan_grace_seconds} s and are kept for now: the next kave purge, "
            "kave erase or kave audit --repair removes them if no row names them then"
        )
    return 0


_PURGE_VERBS = {
    "raw_messages": "raw message objects released",
    "attachments": "attachment objects released",
    "archive": "webhook archives released",
    "objects": "objects deleted",
}


def _purge(args: argparse.Namespace, settings: Settings) -> int:
    from shared.lifecycle.purge import purge, retention_days, would_purge

    policy = retention_days(settings)
    kept = ", ".join(f"{kind} {f'{d} d' if d else 'forever'}" for kind, d in policy.items())
    print(f"retention: {kept}", flush=True)
    if args.dry_run:
        with _resources(settings) as (sessions, _store):
            found = would_purge(sessions, settings)
        counts = ", ".join(f"{kind} {count}" for kind, count in found.items())
        print(f"would remove (each kind as things stand now): {counts}")
        return 0

    def progress(kind: str, count: int) -> None:
        print(f"  {kind}: {count} {_PURGE_VERBS.get(kind, 'rows deleted')}", flush=True)

    with _resources(settings) as (sessions, store):
        report = purge(sessions, store, settings, progress=progress)
    counts = ", ".join(f"{kind} {count}" for kind, count in report.counts.items())
    objects = report.objects
    print(f"purged: {counts}; objects deleted {objects.deleted}")
    if objects.deferred:
        print(
            f"{objects.deferred} objects were written in the last "
            f"{settings.orphan_grace_seconds} s and are kept for now (the next purge retries)"
        )
    return 0
