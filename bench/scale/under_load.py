"""``kave migrate`` on the filled database while writes and reads go on.

Two threads run during the upgrade: a writer inserting email rows one per transaction
(with the columns every revision since 0009 has, as a worker of the old release would:
only the key lookups and index updates of an insert) and a reader fetching the newest
page of emails. Each records how long every statement took (a lock, or the disk the
backfill keeps busy). A third samples ``pg_stat_activity`` every 20 ms for sessions
waiting on a lock: the longest such wait seen is the lock figure.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text

_WRITE = text(
    """
    INSERT INTO emails (dedup_key, raw_sha256, raw_size, raw_key, envelope_recipient,
        from_address, "to", cc, bcc, reply_to, "references", headers, tags, spam_rules,
        bounced_addresses, subject, delivery_id, received_at)
    VALUES (:key, :key, 1, 'messages/x.eml', 'box1@mail1.example', 'live@writer.example',
        '[]', '[]', '[]', '[]', '[]', '[]', '[]', '[]', '[]', 'written during migrate',
        (SELECT id FROM deliveries ORDER BY id LIMIT 1), now())
    """
)
_READ = text("SELECT id, subject FROM emails ORDER BY received_at DESC, id DESC LIMIT 50")


class _Loop(threading.Thread):
    def __init__(self, engine: Engine, statement: Any, params: Callable[[], dict[str, Any]]):
        super().__init__(daemon=True)
        self.engine, self.statement, self.params = engine, statement, params
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        with self.engine.connect() as connection:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    connection.execute(self.statement, self.params())
                    connection.commit()
                except Exception as exc:
                    connection.rollback()
                    self.errors.append(type(exc).__name__)
                self.latencies.append(time.perf_counter() - started)
                time.sleep(0.02)  # ~40 statements/s: a live but not saturating load


_LOCK_WAITS = text(
    "SELECT coalesce(max(extract(epoch FROM now() - state_change)), 0) FROM pg_stat_activity "
    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
)


class _LockWatch(threading.Thread):
    """The longest lock wait of any session of the database, sampled every 20 ms."""

    def __init__(self, engine: Engine):
        super().__init__(daemon=True)
        self.engine = engine
        self.stop = threading.Event()
        self.longest = 0.0

    def run(self) -> None:
        with self.engine.connect() as connection:
            while not self.stop.is_set():
                waited = connection.execute(_LOCK_WAITS).scalar_one()
                connection.rollback()
                self.longest = max(self.longest, float(waited))
                time.sleep(0.02)


def _summary(loop: _Loop) -> dict[str, Any]:
    ordered = sorted(loop.latencies)
    return {
        "statements": len(ordered),
        "errors": len(loop.errors),
        "max_ms": round(1000 * ordered[-1], 1) if ordered else None,
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1) if ordered else None,
    }


def migrate_under_load(engine: Engine, upgrade: Callable[[], None]) -> dict[str, Any]:
    writer = _Loop(engine, _WRITE, lambda: {"key": uuid.uuid4().hex})
    reader = _Loop(engine, _READ, dict)
    locks = _LockWatch(engine)
    writer.start()
    reader.start()
    locks.start()
    time.sleep(1.0)  # both running before the migration starts
    started = time.perf_counter()
    upgrade()
    seconds = time.perf_counter() - started
    time.sleep(0.5)
    for thread in (writer, reader, locks):
        thread.stop.set()
        thread.join()
    return {
        "seconds": round(seconds, 1),
        "writes": _summary(writer),
        "reads": _summary(reader),
        "longest_lock_wait_ms": round(1000 * locks.longest, 1),
    }
