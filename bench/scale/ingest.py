"""``python -m bench.scale.ingest --database URL``: does ingest slow down as the data grows,
and what do migration 0012's indexes cost each insert? (Issue 37; BENCHMARKS.md.)

The worker bench's end-to-end rate (``bench.worker_bench``: signed batches enqueued to a
real worker process, timed until every delivery is processed, against a no-op task on
the same queue) run in alternating rounds against three databases:

- ``filled``: the database given, already filled and migrated to head (for example one
  that ``python -m bench.scale`` filled, or a copy kept by hand);
- ``empty``: a scratch database at head;
- ``empty, no 0012 indexes``: a scratch database at head without the indexes migration
  0012 added, so the difference to ``empty`` is what those indexes cost an insert.

Each round runs the three in a rotated order, so the load of someone else's job hits all
alike. Prints each round's rate, share of the no-op ceiling and worker CPU per email, and
the medians. New emails are written into the filled database: use a scratch copy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench import stack, worker_bench
from bench.run import Services
from kave import devstack
from loadkit import disk
from shared.db import normalise_database_url
from shared.migrate import MIGRATIONS_DIR, upgrade_to_head

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def new_indexes() -> list[str]:
    """The index names migration 0012 added (its own list, so the two cannot drift)."""
    path = MIGRATIONS_DIR / "versions" / "0012_list_indexes.py"
    spec = importlib.util.spec_from_file_location("migration_0012", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.NEW_INDEXES)


def drop_indexes(url: str, names: list[str]) -> None:
    engine = create_engine(normalise_database_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for name in names:
            connection.execute(text(f"DROP INDEX IF EXISTS {name}"))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="a filled database at head")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="8KB", choices=sorted(worker_bench.COUNTS))
    args = parser.parse_args(argv)

    results: dict[str, list[dict[str, Any]]] = {}
    with ExitStack() as stack_:
        tmp = Path(stack_.enter_context(tempfile.TemporaryDirectory(prefix="kave-ingest-")))
        redis_url, _version = stack_.enter_context(stack.redis_server(tmp))
        server = stack_.enter_context(devstack.postgres_server(ADMIN_URL, tmp / "postgres"))
        targets = {"filled": args.database}
        for label in ("empty", "empty, no 0012 indexes"):
            url = stack_.enter_context(devstack.scratch_database(server, prefix="kave_ingest"))
            upgrade_to_head(url)
            targets[label] = url
        drop_indexes(targets["empty, no 0012 indexes"], new_indexes())
        objects = disk.store_directory(tmp, "objects-")
        labels = list(targets)
        for round_ in range(args.rounds):
            order = labels[round_ % len(labels) :] + labels[: round_ % len(labels)]
            for label in order:
                settings = Services(tmp, redis_url, targets[label], objects).settings()
                try:
                    (row,) = worker_bench.run(
                        settings,
                        None,
                        tmp,
                        sizes=[args.size],
                        processes=[1],
                        quick=True,
                        progress=lambda _line: None,
                    )
                except TimeoutError:
                    for log in sorted(tmp.glob("*.log")):
                        print(f"--- {log.name}:\n" + log.read_text(errors="replace")[-3000:])
                    raise
                figures = {
                    "rate": round(row.rate, 1),
                    "share_of_noop": round(row.ratio, 3),
                    "cpu_ms": round(row.cpu_ms, 2),
                    "failed": row.failed,
                }
                results.setdefault(label, []).append(figures)
                print(
                    f"round {round_ + 1} {label:<24} {row.rate:6.1f} emails/s "
                    f"({row.ratio:.0%} of the no-op)  worker CPU {row.cpu_ms:5.1f} ms/email  "
                    f"failed {row.failed}",
                    flush=True,
                )
    summary = {
        label: {
            "rate_median": statistics.median(r["rate"] for r in rows),
            "share_of_noop_median": statistics.median(r["share_of_noop"] for r in rows),
            "cpu_ms_median": statistics.median(r["cpu_ms"] for r in rows),
        }
        for label, rows in results.items()
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
