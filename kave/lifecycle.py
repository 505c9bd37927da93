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
        "(default KAVE_ORPHAN_GRACE_SECONDS)",
    )
    audit.set_defaults(handler=handler(_audit))


@contextmanager
def _resources(settings: Settings) -> Iterator[tuple[SessionFactory, ObjectStore]]:
    engine = make_engine(settings)
    try:
        yield make_session_factory(engine), make_object_store(settings)
    finally:
        engine.dispose()


def _say(message: str) -> None:
    print(message, flush=True)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from shared.lifecycle.audit import run_audit

    grace = settings.orphan_grace_seconds if args.grace is None else args.grace
    with _resources(settings) as (sessions, store):
        report = run_audit(sessions, store, grace_seconds=grace, repair=args.repair, progress=_say)
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
