"""Figures of the agent surface (issue 34), on request: ``python -m bench.agent_bench``.

- ``search``: ``--emails`` generated emails (default 100,000) in a scratch database; the
  search index built CONCURRENTLY while one writer inserts emails one transaction at a
  time (how long the build takes, and the writer's insert latency during it against
  before it: the build must not block ingest); then ``--clients`` concurrent clients
  (default 4) searching through a real uvicorn API with an agent key, over a mix of
  frequent, middling and rare words, two-word and phrase queries: p50, p95, p99.
- ``feed``: ``--feed-emails`` (default 500) committed by 4 writers whose transactions stay
  open a random while (so ids commit out of order), while a live-feed client reconnects
  ``--reconnections`` times (default 10) with Last-Event-ID: how many it got, repeats,
  and whether the order is the feed's.

``--database-url`` searches a database an earlier run (or ``fill``) left instead of a
scratch one: it is migrated to the head, filled only if it holds fewer than ``--emails``
emails, and the index build is not measured (so a search-only round takes a minute, not
fifteen).

The texts are pseudo-words drawn with a skewed (Zipf-like) distribution from a fixed
vocabulary, seeded, so runs compare. Not part of ``make bench``: it takes minutes and
needs nothing the default table measures.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from bench.stack import postgres_database, redis_server, uvicorn
from kave.devstack import child_env
from loadkit.disk import scratch
from loadkit.feed_client import FeedReader
from loadkit.percentiles import percentile
from shared.agent_keys import key_sha256, new_key, shown_prefix
from shared.db import normalise_database_url
from shared.models import ApiKey, Delivery, Email
from shared.settings import Settings

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "be", "do", "fa", "gu", "pe", "zo"]
BODY_WORDS = 120
SUBJECT_WORDS = 6
BATCH = 10_000
DELIVERY = "00000000-0000-4000-8000-00000000b34c"


def vocabulary(size: int = 5000) -> list[str]:
    rng = random.Random(34)  # noqa: S311 - seeded: the same inputs every run
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words, key=lambda w: (len(w), w))


_FILL = text(
    """
    INSERT INTO emails (dedup_key, raw_sha256, raw_size, raw_key, envelope_recipient,
                        from_address, subject, text_body, reply_text, delivery_id,
                        received_at, headers, "to", cc, bcc, reply_to, "references", tags,
                        spam_rules, conversation_id)
    SELECT md5('d' || i) || md5('e' || i), md5('r' || i) || md5('s' || i), 1, 'bench',
           'box' || (i % 20) || '@example.com', 'sender' || (i % 500) || '@example.org',
           (SELECT string_agg(
                       (CAST(:vocab_arr AS text[]))[1 + floor(power(random(), 3) * :n)::int], ' ')
              FROM generate_series(1, CAST(:subject_words AS int)) WHERE i > 0),
           body, left(body, 300), :delivery,
           now() - make_interval(secs => i * 30), '[]', '[]', '[]', '[]', '[]', '[]', '[]',
           '[]', 'thread-' || (i / 4)
    FROM (
        SELECT i, (SELECT string_agg(
                           (CAST(:vocab_arr AS text[]))[1 + floor(power(random(), 3) * :n)::int],
                           ' ')
                     FROM generate_series(1, CAST(:body_words AS int)) WHERE i > 0) AS body
        FROM generate_series(CAST(:first AS int), CAST(:last AS int)) AS i
    ) AS generated
    """
)


def ensure_delivery(engine: Engine) -> None:
    """The one delivery every generated email names (the feed run may come first)."""
    with engine.begin() as connection:
        connection.execute(
            pg_insert(Delivery).values(
                id=DELIVERY, received_at=text("now()"), request_id="bench", body_sha256="0" * 64,
                body_size=1, archive_key="bench", status="processed",
            ).on_conflict_do_nothing()
        )  # fmt: skip


def fill(engine: Engine, count: int, vocab: list[str]) -> float:
    started = time.perf_counter()
    ensure_delivery(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX IF EXISTS ix_emails_search"))
    for first in range(1, count + 1, BATCH):
        with engine.begin() as connection:
            connection.execute(
                _FILL.bindparams(vocab_arr=vocab),
                {
                    "n": len(vocab), "subject_words": SUBJECT_WORDS,
                    "body_words": BODY_WORDS, "delivery": DELIVERY,
                    "first": first, "last": min(count, first + BATCH - 1),
                },
            )  # fmt: skip
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("VACUUM ANALYZE emails")
        )
    return time.perf_counter() - started


def insert_one(engine: Engine, recipient: str, hold: float = 0) -> int:
    key = uuid.uuid4().hex * 2
    with engine.begin() as connection:
        email_id = connection.execute(
            insert(Email)
            .values(
                dedup_key=key, raw_sha256=key, raw_size=1, raw_key="bench",
                envelope_recipient=recipient, subject="ingest during the build",
                text_body="an email stored while the index is built", delivery_id=DELIVERY,
            )
            .returning(Email.id)
        ).scalar_one()  # fmt: skip
        time.sleep(hold)
    return int(email_id)


def build_index_during_ingest(engine: Engine) -> dict[str, Any]:
    """Build the search index as migration 0013 does while a writer inserts."""

    definition = "CREATE INDEX CONCURRENTLY ix_emails_search ON emails USING gin (search_document)"
    latencies: list[float] = []
    before: list[float] = []
    stop = threading.Event()

    def writer(into: list[float]) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            insert_one(engine, "ingest@example.com")
            into.append(time.perf_counter() - started)
            time.sleep(0.01)

    baseline = threading.Thread(target=writer, args=(before,))
    baseline.start()
    time.sleep(3)
    stop.set()
    baseline.join()
    stop.clear()
    during = threading.Thread(target=writer, args=(latencies,))
    during.start()
    started = time.perf_counter()
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text(definition))
    build_seconds = time.perf_counter() - started
    stop.set()
    during.join()
    return {
        "build_s": round(build_seconds, 1),
        "inserts_during_build": len(latencies),
        "insert_ms_before_p50": ms(statistics.median(before)),
        "insert_ms_before_max": ms(max(before)),
        "insert_ms_during_p50": ms(statistics.median(latencies)),
        "insert_ms_during_p99": ms(percentile(latencies, 0.99)),
        "insert_ms_during_max": ms(max(latencies)),
    }


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def agent_key(engine: Engine) -> str:
    key = new_key()
    with Session(engine) as session:
        session.add(ApiKey(name=f"bench-{uuid.uuid4().hex[:6]}", key_sha256=key_sha256(key),
                           prefix=shown_prefix(key), scope="read", mailboxes=[]))  # fmt: skip
        session.commit()
    return key


def queries(vocab: list[str], count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)  # noqa: S311 - seeded: the same inputs every run
    kinds = {
        "frequent": lambda: vocab[rng.randrange(0, 10)],
        "middling": lambda: vocab[rng.randrange(100, 400)],
        "rare": lambda: vocab[rng.randrange(2000, 5000)],
        "two words": lambda: f"{vocab[rng.randrange(0, 50)]} {vocab[rng.randrange(50, 500)]}",
        "phrase": lambda: f'"{vocab[rng.randrange(0, 20)]} {vocab[rng.randrange(0, 20)]}"',
    }
    names = list(kinds)
    return [(name, kinds[name]()) for name in (rng.choice(names) for _ in range(count))]


def search_load(base: str, key: str, vocab: list[str], clients: int, each: int) -> dict[str, Any]:
    timings: list[tuple[str, float]] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
            for kind, words in queries(vocab, each, seed):
                started = time.perf_counter()
                response = http.get("/api/v1/search", params={"q": words, "limit": 20})
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text
                with lock:
                    timings.append((kind, elapsed))

    # A warm-up pass (connections, plans, caches) that is not counted.
    search_one = threading.Thread(target=client, args=(999,))
    search_one.start()
    search_one.join()
    timings.clear()
    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    every = [t for _, t in timings]
    figures: dict[str, Any] = {
        "requests": len(every),
        "per_s": round(len(every) / wall, 1),
        "p50_ms": ms(percentile(every, 0.50)),
        "p95_ms": ms(percentile(every, 0.95)),
        "p99_ms": ms(percentile(every, 0.99)),
    }
    for kind in sorted({k for k, _ in timings}):
        mine = [t for k, t in timings if k == kind]
        figures[f"p95_ms {kind}"] = ms(percentile(mine, 0.95))
    return figures


def feed_run(base: str, engine: Engine, total: int, reconnections: int) -> dict[str, Any]:
    ensure_delivery(engine)
    reader = FeedReader(base, {"Authorization": f"Bearer {agent_key(engine)}"})
    reader.read(0, timeout=10)
    rng = random.Random(5)  # noqa: S311 - seeded: the same inputs every run
    holds = [rng.choice((0, 0, 0.05, 0.3)) for _ in range(total)]

    def write(share: list[float]) -> None:
        for hold in share:
            insert_one(engine, "feed@example.com", hold)

    writers = [threading.Thread(target=write, args=(holds[i::4],)) for i in range(4)]
    started = time.perf_counter()
    for thread in writers:
        thread.start()
    for _ in range(reconnections):
        reader.read(total // (reconnections + 1), timeout=60)
    for thread in writers:
        thread.join()
    while len(reader.received) < total and reader.connections < reconnections + 50:
        reader.read(total - len(reader.received), timeout=10)
    with Session(engine) as session:
        expected = list(
            session.scalars(
                select(Email.id)
                .where(Email.envelope_recipient == "feed@example.com")
                .order_by(Email.feed_position, Email.id)
            )
        )
    return {
        "emails": total,
        "connections": reader.connections,
        "received": len(reader.received),
        "repeats": len(reader.received) - len(set(reader.received)),
        "missing": len(set(expected) - set(reader.received)),
        "in_feed_order": reader.received == expected,
        "seconds": round(time.perf_counter() - started, 1),
    }


@contextmanager
def _database(tmp: Path, url: str | None) -> Iterator[str]:
    if url is None:
        with postgres_database(tmp) as scratch_url:
            yield scratch_url
        return
    from shared.migrate import upgrade_to_head

    upgrade_to_head(url)
    yield url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["search", "feed"])
    parser.add_argument("--emails", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--queries", type=int, default=100, help="per client")
    parser.add_argument("--feed-emails", type=int, default=500)
    parser.add_argument("--reconnections", type=int, default=10)
    parser.add_argument("--database-url", help="search this database (kept) instead")
    args = parser.parse_args(argv)
    vocab = vocabulary()
    with (
        scratch("kave-agent-bench-") as tmp,
        redis_server(tmp) as (redis_url, _),
        _database(tmp, args.database_url) as url,
    ):
        engine = create_engine(normalise_database_url(url), pool_size=8)
        settings = Settings(
            _env_file=None, env="test", database_url=url, redis_url=redis_url,
            object_store="local", local_store_dir=tmp / "objects",
            rate_limit_api="1000000/minute", stream_poll_seconds=0.2,
        )  # fmt: skip
        with uvicorn(
            "api.app:create_app", child_env(settings), Path(tmp) / "api.log", workers=2
        ) as (base, _):
            if args.only in (None, "search"):
                with engine.connect() as connection:
                    stored = connection.execute(text("SELECT count(*) FROM emails")).scalar_one()
                if args.database_url is None or stored < args.emails:
                    seconds = fill(engine, args.emails, vocab)
                    print(f"search: {args.emails} emails generated in {seconds:.0f} s")
                    print("search: index build during ingest:", build_index_during_ingest(engine))
                else:
                    print(f"search: {stored} emails already in the database")
                figures = search_load(base, agent_key(engine), vocab, args.clients, args.queries)
                print(f"search: {args.clients} clients:", figures)
            if args.only in (None, "feed"):
                print("feed:", feed_run(base, engine, args.feed_emails, args.reconnections))
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
