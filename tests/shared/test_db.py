"""The engine's bounded waits and its silence about bound values, on real servers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from shared import db as shared_db
from shared.db import make_engine
from shared.settings import Settings
from tests.services import derive_settings


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose TCP handshake succeeds (the kernel's backlog accepts it) and that then
    never says a word: a hung or SIGSTOPped PostgreSQL, as a client sees it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_connect_to_a_server_that_never_answers_fails_within_the_timeout(
    base_settings: Settings, silent_server: int
) -> None:
    settings = derive_settings(
        base_settings,
        database_url=f"postgresql://postgres@127.0.0.1:{silent_server}/kave",
        database_connect_timeout_seconds=2,
    )
    engine = make_engine(settings)
    started = time.monotonic()
    with pytest.raises(OperationalError):
        engine.connect().close()
    elapsed = time.monotonic() - started
    engine.dispose()
    print(f"connect to a silent server failed after {elapsed:.2f} s (timeout 2 s)")
    # libpq alone would wait about 130 s (the kernel's SYN/ACK retries) or for ever.
    assert 1.5 <= elapsed < 10


def test_statement_timeout_cancels_a_long_statement(base_settings: Settings) -> None:
    engine = make_engine(derive_settings(base_settings, database_statement_timeout_ms=300))
    started = time.monotonic()
    with engine.connect() as conn, pytest.raises(OperationalError) as caught:
        conn.execute(text("SELECT pg_sleep(20)"))
    elapsed = time.monotonic() - started
    engine.dispose()
    print(f"pg_sleep(20) cancelled after {elapsed:.2f} s (statement_timeout 300 ms)")
    assert type(caught.value.orig).__name__ == "QueryCanceled"
    assert elapsed < 10


def test_statement_timeout_zero_means_no_limit(base_settings: Settings) -> None:
    engine = make_engine(derive_settings(base_settings, database_statement_timeout_ms=0))
    with engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"
    engine.dispose()


def test_the_default_statement_timeout_is_set_on_every_connection(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "30s"


def test_errors_do_not_carry_bound_values(engine: Engine) -> None:
    # The statement fails for a reason of its own (a division by zero), so the driver's
    # message does not quote the value either (worker.errors.describe handles those that
    # do): what is left to hide is SQLAlchemy's "[parameters: ...]".
    secret = "subject-that-must-not-leak"
    with engine.connect() as conn, pytest.raises(DBAPIError) as caught:
        conn.execute(text("SELECT CAST(:v AS text), 1 / 0"), {"v": secret})
    assert type(caught.value.orig).__name__ == "DivisionByZero"
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value)
    assert "parameters hidden" in str(caught.value)


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


@pytest.fixture
def pool_of_one_dead_connection(base_settings: Settings) -> Iterator[tuple[Engine, int]]:
    """An engine whose pool holds one connection, just checked in, whose server process
    was then terminated (as a PostgreSQL restart leaves it); and that process's pid."""
    engine = make_engine(derive_settings(base_settings, db_pool_size=1, db_max_overflow=0))
    admin = make_engine(base_settings)
    try:
        pid = _backend_pid(engine)
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        yield engine, pid
    finally:
        admin.dispose()
        engine.dispose()


def test_a_connection_that_died_while_idle_is_replaced_at_checkout(
    pool_of_one_dead_connection: tuple[Engine, int],
) -> None:
    engine, dead = pool_of_one_dead_connection
    time.sleep(shared_db.PING_AFTER_IDLE_SECONDS + 0.2)
    # Idle past the threshold: pinged at checkout, found dead, replaced; no error.
    assert _backend_pid(engine) != dead


def test_a_connection_used_just_before_is_not_pinged_and_a_dead_one_fails_once(
    pool_of_one_dead_connection: tuple[Engine, int],
) -> None:
    engine, dead = pool_of_one_dead_connection
    # Checked in a moment ago: no ping, so its first statement finds it dead ...
    with pytest.raises(OperationalError), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    # ... and SQLAlchemy, seeing a disconnect, replaced it: the next checkout works.
    assert _backend_pid(engine) != dead
