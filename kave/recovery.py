"""``kave dead-letters``, ``replay``, ``discard``, ``reconcile`` and ``reprocess``.

What an operator needs to answer "what failed, and can I replay it?" without SQL. The
commands run the worker's own services in this process (the worker image has them),
against the configured database, Redis and object store.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import click
from sqlalchemy import Select

from shared.lifecycle.erased import ERASURE, ArchiveRemovedError, refusal
from shared.models import DeadLetter, DeadLetterStatus, Delivery
from shared.queries.dead_letters import DeadLetterFilters, discard_open, select_dead_letters
from shared.queries.deliveries import get_delivery
from shared.settings import Settings

Loader = Callable[[], Settings]


def register(commands: Any, load_settings: Loader) -> None:
    """Add the recovery subcommands to the ``kave`` parser."""

    def handler(function: Callable[[argparse.Namespace, Settings], int]) -> Any:
        return lambda args: function(args, load_settings())

    listing = commands.add_parser("dead-letters", help="list dead letters")
    listing.add_argument(
        "--status", default="open", choices=["open", "replayed", "discarded", "all"]
    )
    _add_filters(listing)
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=handler(_list))

    replay = commands.add_parser("replay", help="replay dead letters (by id, or --all matching)")
    replay.add_argument("ids", nargs="*", type=int, help="dead letter ids")
    replay.add_argument("--all", action="store_true", help="every open dead letter matching")
    _add_filters(replay)
    replay.set_defaults(handler=handler(_replay))

    discard = commands.add_parser("discard", help="discard dead letters that need no result")
    discard.add_argument("ids", nargs="*", type=int, help="dead letter ids")
    discard.add_argument("--all", action="store_true", help="every open dead letter matching")
    _add_filters(discard)
    discard.set_defaults(handler=handler(_discard))

    reconcile = commands.add_parser(
        "reconcile",
        help="queue again deliveries that were recorded, or only accepted, and never finished",
    )
    reconcile.add_argument(
        "--older-than",
        type=int,
        default=None,
        help="seconds since the last attempt or queuing (default KAVE_RECONCILE_AFTER_SECONDS)",
    )
    reconcile.set_defaults(handler=handler(_reconcile))

    reprocess = commands.add_parser(
        "reprocess", help="re-derive rows from the raw archive (after a parser fix)"
    )
    scope = reprocess.add_mutually_exclusive_group(required=True)
    scope.add_argument("--delivery", help="one delivery id")
    scope.add_argument("--since", type=datetime.fromisoformat, help="ISO time (inclusive)")
    scope.add_argument(
        "--text",
        action="store_true",
        help="convert attachment text again where another extractor or version made it",
    )
    reprocess.add_argument("--until", type=datetime.fromisoformat, help="ISO time (exclusive)")
    reprocess.add_argument("--dry-run", action="store_true", help="only print what would change")
    reprocess.set_defaults(handler=handler(_reprocess))


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--error-class", help="e.g. invalid_event, worker_lost, transient:…")
    parser.add_argument("--kind", help="event kind, e.g. inbound")
    parser.add_argument("--delivery", help="delivery id")


def _filtered(args: argparse.Namespace, status: str | None) -> Select[DeadLetter]:
    filters = DeadLetterFilters(
        status=None if status == "all" else status or None,
        kind=args.kind or None,
        error_class=args.error_class or None,
        delivery_id=args.delivery or None,
    )
    return select_dead_letters(filters).order_by(DeadLetter.id)


def _context(settings: Settings) -> Any:
    from worker.resources import ingest_context

    return ingest_context(settings)


def _selected_ids(args: argparse.Namespace, settings: Settings) -> list[int] | None:
    if args.ids and args.all:
        print("kave: give dead letter ids or --all, not both")
        return None
    if not args.ids and not args.all:
        print("kave: give dead letter ids, or --all (with filters) to select by filter")
        return None
    if args.ids:
        return list(args.ids)
    with _context(settings).session_factory() as session:
        return [dl.id for dl in session.scalars(_filtered(args, DeadLetterStatus.OPEN))]


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with _context(settings).session_factory() as session:
        rows = session.scalars(_filtered(args, args.status).limit(args.limit)).all()
    if not rows:
        print("no dead letters" + ("" if args.status == "all" else f" with status {args.status}"))
        return 0
    for dl in rows:
        where = "delivery" if dl.event_index is None else f"event {dl.event_index}"
        print(
            f"{dl.id:>6}  {dl.status:<9} {dl.error_class:<22} {dl.kind or '-':<10} "
            f"{dl.delivery_id} {where}  attempts={dl.attempts}  "
            f"last={dl.last_seen_at:%Y-%m-%d %H:%M:%S}"
        )
        print(f"        {dl.message}")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from worker.celery_app import create_celery_app
    from worker.handoff.tasks import dispatch_context
    from worker.recovery.replay import NOT_OPEN, replay_dead_letter
    from worker.resources import worker_context

    ids = _selected_ids(args, settings)
    if ids is None:
        return 2
    # A dispatch dead letter (hand-off) publishes handler tasks and retries: this app.
    create_celery_app(settings).set_current()
    context = worker_context(settings)
    handoff = dispatch_context(context)
    results: dict[str, int] = {}
    refusals: list[str] = []
    with click.progressbar(ids, label="replaying", show_pos=True) as bar:
        for dead_letter_id in bar:
            try:
                outcome = replay_dead_letter(context.ingest, dead_letter_id, handoff=handoff)
            except LookupError:
                outcome = "not_found"
            except ArchiveRemovedError as exc:
                outcome = "refused"
                refusals.append(f"kave: dead letter {dead_letter_id} not replayed: {exc}")
            results[outcome] = results.get(outcome, 0) + 1
    for line in refusals:
        print(line, file=sys.stderr)
    print(f"replayed {len(ids)}: " + ", ".join(f"{k} {v}" for k, v in sorted(results.items())))
    if results.get(NOT_OPEN):
        print("(not_open: already replayed or discarded)")
    return 1 if results.get("failed") or refusals else 0


def _discard(args: argparse.Namespace, settings: Settings) -> int:
    ids = _selected_ids(args, settings)
    if ids is None:
        return 2
    with _context(settings).session_factory() as session, session.begin():
        discarded = len(discard_open(session, ids))
    print(f"discarded {discarded} of {len(ids)} (only open dead letters can be discarded)")
    return 0


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from worker.celery_app import create_celery_app
    from worker.recovery.reconcile import reconcile
    from worker.tasks import publish_delivery

    create_celery_app(settings).set_current()
    older_than = args.older_than or settings.reconcile_after_seconds
    requeued = reconcile(
        _context(settings), publish=publish_delivery, older_than_seconds=older_than
    )
    print(f"queued again {len(requeued)} unfinished deliveries older than {older_than} s")
    for delivery_id in requeued:
        print(f"  {delivery_id}")
    return 0


def _reprocess(args: argparse.Namespace, settings: Settings) -> int:
    from worker.recovery.reprocess import deliveries_between, reprocess

    if args.text:
        return _reprocess_text(args, settings)
    context = _context(settings)
    if args.delivery:
        with context.session_factory() as session:
            found = get_delivery(session, args.delivery)
        if found is None:
            print(f"kave: no delivery {args.delivery}")
            return 2
        if found.archive_removed_reason == ERASURE:
            print(f"kave: {refusal(found, 'reprocessed')}", file=sys.stderr)
            return 1
        batches: Iterable[list[Delivery]] = [[found]]
    else:
        batches = deliveries_between(context, since=args.since, until=args.until)
    checked = changed = gone = 0
    for number, deliveries in enumerate(batches):
        if number:  # progress, from the second batch on
            print(f"  ... {checked + gone} deliveries read, {changed} rows to change", flush=True)
        # Retention or an erasure removed these archives on purpose: say so, and go on.
        for delivery in deliveries:
            if delivery.archive_removed_at is not None:
                gone += 1
                print(
                    f"  {delivery.id}: not reprocessable: its archive was removed by "
                    f"{delivery.archive_removed_reason} on {delivery.archive_removed_at:%Y-%m-%d}"
                )
        live = [d for d in deliveries if d.archive_removed_at is None]
        for change in reprocess(context, live, dry_run=args.dry_run):
            print(f"  {change}")
            changed += 1
        checked += len(live)
    if gone:
        print(f"{gone} deliveries can no longer be reprocessed (archive removed)")
    verb = "would change" if args.dry_run else "changed"
    if not changed:
        print(f"no changes ({checked} deliveries checked)")
        return 0
    print(f"{verb} {changed} rows in {checked} deliveries")
    return 0


def _reprocess_text(args: argparse.Namespace, settings: Settings) -> int:
    """Attachments whose text an older extractor made (or none, stored before text
    existed) become pending, and their contents are queued on the text queue; the text
    sweep queues whatever this misses. Rows stored before text existed go 5,000 at a time:
    run it again until it reports nothing."""
    from shared.contract import TEXT_CONVERT_TASK
    from shared.queue import make_producer
    from worker.text.service import mark_stale

    context = _context(settings)
    with context.session_factory() as session, session.begin():
        shas = mark_stale(session, dry_run=args.dry_run)
    if args.dry_run:
        print(f"would convert {len(shas)} attachment contents again")
        return 0
    producer = make_producer(settings, "kave-reprocess")
    for sha256 in shas:
        producer.send_task(
            TEXT_CONVERT_TASK,
            kwargs={"sha256": sha256},
            queue=settings.text_queue_name,
            kwargsrepr=f"sha256={sha256[:12]}",
        )
    print(f"queued {len(shas)} attachment contents for conversion")
    return 0
