"""PostgreSQL for tests and benchmarks: the machine's server or an embedded one, and
scratch databases on it that are dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from kave.devstack.embedded import EmbeddedPostgres


def postgres_answers(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


@contextmanager
def postgres_server(admin_url: str, data_dir: Path) -> Iterator[str]:
    """An admin URL: ``admin_url`` when a server answers there, else that of an embedded
    server with its data in ``data_dir``, stopped after the block."""
    if postgres_answers(admin_url):
        yield admin_url
        return
    embedded = EmbeddedPostgres(data_dir)
    embedded.start(database="postgres")
    try:
        yield embedded.server.get_uri(database="postgres")
    finally:
        embedded.stop()


@contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """The URL of a new, empty database ``<prefix>_<random>`` on the server of
    ``admin_url``, dropped (connections and all) after the block."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    # `name` is built here from a fixed prefix and hex digits, never from user input.
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
