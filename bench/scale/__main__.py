"""``python -m bench.scale``: Kave on a database of N emails (issue 37; BENCHMARKS.md).

1. a scratch PostgreSQL database (``kave_scale_<random>``, dropped at the end) at the
   schema before migration 0012, filled with SQL to N emails (``fill.py``);
2. ``kave migrate`` to head on it while a writer and a reader run (``under_load.py``):
   its time and the longest statement of each;
3. every list filter of the API, p50 and p95 through the API's query functions, with the
   plan each got (``probes.py``, ``timing.py``);
4. the operator commands, timed with their peak memory (``operators.py``).

Then the table. ``--emails 10000`` for a small run; ``--skip-operators`` leaves step 4;
``--database URL`` runs steps 3 and 4 on a database filled and migrated before.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.scale.fill import fill
from bench.scale.operators import operator_commands
from bench.scale.probes import probes
from bench.scale.timing import time_probes
from bench.scale.under_load import migrate_under_load
from bench.stack import redis_server
from kave.devstack import scratch_database
from shared.db import make_engine, normalise_database_url
from shared.migrate import MIGRATIONS_DIR, upgrade_to_head
from shared.settings import Settings

NEW_REVISION = "0012_list_indexes"
ADMIN_URL = os.environ.get(
    "KAVE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def upgrade_to(url: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    command.upgrade(config, revision)


def previous_revision() -> str:
    from alembic.script import ScriptDirectory

    down = ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(NEW_REVISION).down_revision
    assert isinstance(down, str)
    return down


_SIZES = """
SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')
  AND c.relname IN ('emails', 'deliveries', 'ix_emails_sender', 'ix_emails_recipient_addresses',
                    'ix_emails_subject_trgm', 'ix_emails_spf', 'ix_emails_spam_score',
                    'ix_deliveries_received', 'ix_deliveries_status_received', 'domain_activity')
ORDER BY 1
"""


def run(emails: int, runs: int, operators: bool, say: Any = print) -> dict[str, Any]:
    record: dict[str, Any] = {"emails": emails}
    with tempfile.TemporaryDirectory(prefix="kave-scale-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "objects").mkdir()
        with scratch_database(ADMIN_URL, prefix="kave_scale") as url:
            before = previous_revision()
            say(f"scratch database at {before}; filling {emails:,} emails")
            upgrade_to(url, before)
            filler = create_engine(normalise_database_url(url), isolation_level="AUTOCOMMIT")
            started = time.perf_counter()
            with filler.connect() as connection:
                record["fill_seconds"] = fill(connection, emails, say)
            record["fill_total_seconds"] = round(time.perf_counter() - started, 1)

            engine = make_engine(bench_settings(url, tmp))
            say("kave migrate to head, with a writer and a reader running")
            record["migrate"] = migrate_under_load(engine, lambda: upgrade_to_head(url))
            say(f"  {json.dumps(record['migrate'])}")
            engine.dispose()
            with filler.connect() as connection:
                started = time.perf_counter()
                connection.execute(text("VACUUM (ANALYZE)"))
                record["vacuum_after_migrate_seconds"] = round(time.perf_counter() - started, 1)
            filler.dispose()
            measure(url, tmp, record, runs=runs, operators=operators, say=say)
    return record


def bench_settings(url: str, tmp: Path) -> Settings:
    return Settings(
        _env_file=None,
        env="test",
        database_url=url,
        object_store="local",
        local_store_dir=tmp / "objects",
        log_format="json",
        log_level="WARNING",
    )


def measure(
    url: str, tmp: Path, record: dict[str, Any], *, runs: int, operators: bool, say: Any
) -> None:
    """Steps 3 and 4 on a filled database at head: the sizes, every list filter, and
    (when ``operators``) the operator commands, which erase and purge some of its mail."""
    settings = bench_settings(url, tmp)
    engine = make_engine(settings)
    with engine.connect() as connection:
        record["sizes_mb"] = {
            name: round(size / 2**20, 1) for name, size in connection.execute(text(_SIZES)).all()
        }
    say("timing every list filter")
    timed = time_probes(engine, probes(engine), runs)
    record["requests"] = [t.as_dict() for t in timed]
    engine.dispose()
    if operators:
        say("operator commands")
        address = "person123@d123.example"
        with redis_server(tmp) as (redis_url, _version):
            with_redis = settings.model_copy(update={"redis_url": redis_url})
            record["operators"] = operator_commands(with_redis, tmp, address)


def run_on(url: str, runs: int, operators: bool, say: Any = print) -> dict[str, Any]:
    """Steps 3 and 4 only, on a database filled and migrated before (``--database``):
    a quiet machine's figures without filling again. Nothing is dropped."""
    engine = create_engine(normalise_database_url(url))
    with engine.connect() as connection:
        emails = connection.execute(text("SELECT count(*) FROM emails")).scalar_one()
    engine.dispose()
    record: dict[str, Any] = {"emails": emails, "database": "given, not filled here"}
    with tempfile.TemporaryDirectory(prefix="kave-scale-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "objects").mkdir()
        measure(url, tmp, record, runs=runs, operators=operators, say=say)
    return record


def print_table(record: dict[str, Any]) -> None:
    print(f"\n== {record['emails']:,} emails ==")
    if "migrate" in record:
        print(f"fill: {record['fill_total_seconds']} s  {record['fill_seconds']}")
        migrate = record["migrate"]
        print(
            f"kave migrate under load: {migrate['seconds']} s; writes {migrate['writes']}; "
            f"reads {migrate['reads']}"
        )
    print(f"sizes (MB): {record['sizes_mb']}")
    print(f"\n{'list':<13} {'request':<32} {'p50 ms':>8} {'p95 ms':>8} {'rows':>5}  plan")
    for row in record["requests"]:
        print(
            f"{row['list']:<13} {row['request']:<32} {row['p50_ms']:>8.2f} "
            f"{row['p95_ms']:>8.2f} {row['rows']:>5}  {row['plan']}"
        )
    for command in record.get("operators", []):
        print(
            f"{command['command']:<48} {command['seconds']:>7.1f} s  peak "
            f"{command['peak_rss_mb']:>6.1f} MB  exit {command['exit']}  "
            f"{command['output_lines']} lines: {command['last_line']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--emails", type=int, default=1_000_000, help="default 1,000,000")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per request")
    parser.add_argument("--skip-operators", action="store_true")
    parser.add_argument(
        "--database",
        help="time a database filled and migrated before (no fill, no migration, not "
        "dropped; the operator commands erase and purge some of its mail)",
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args(argv)
    if args.database:
        record = run_on(args.database, args.runs, not args.skip_operators)
    else:
        record = run(args.emails, args.runs, not args.skip_operators)
    print_table(record)
    if args.out:
        args.out.write_text(json.dumps(record, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
