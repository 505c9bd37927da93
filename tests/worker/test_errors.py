"""Error classification, on exceptions raised by the real services."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import redis
from botocore.config import Config
from botocore.exceptions import ClientError
from sqlalchemy import Engine, create_engine, text

from shared.db import normalise_database_url
from shared.settings import Settings
from tests.services import free_port
from worker.errors import (
    GiveUp,
    RetryLater,
    backoff_seconds,
    decide,
    describe,
    event_failure_class,
    event_failure_reason,
    is_rejected_row,
    is_too_deeply_nested,
    is_transient,
)


def _raised(action: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - any failure is the subject
        action()
    return caught.value


def test_database_down_is_transient() -> None:
    dead = create_engine(
        normalise_database_url(f"postgresql://postgres@127.0.0.1:{free_port()}/x"),
        connect_args={"connect_timeout": 1},
    )
    exc = _raised(lambda: dead.connect().close())
    assert is_transient(exc)
    assert not is_rejected_row(exc)


def test_redis_down_is_transient() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=1)
    assert is_transient(_raised(client.ping))


def test_s3_unreachable_is_transient_and_missing_bucket_is_not(s3_endpoint: str) -> None:
    def client(endpoint: str) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="t",
            aws_secret_access_key="t",
            config=Config(retries={"max_attempts": 1}, connect_timeout=1),
        )

    down = client(f"http://127.0.0.1:{free_port()}")
    assert is_transient(_raised(down.list_buckets))
    up = client(s3_endpoint)
    missing = _raised(lambda: up.get_object(Bucket="no-such-bucket", Key="k"))
    assert isinstance(missing, ClientError)
    assert not is_transient(missing)


def test_value_too_large_for_an_index_is_a_rejected_row(engine: Engine) -> None:
    # Random text does not compress, so the index entry really exceeds PostgreSQL's limit.
    huge = secrets.token_hex(5000)
    with engine.connect() as conn:
        conn.execute(text("CREATE TEMP TABLE t (v text)"))
        conn.execute(text("CREATE INDEX ON t (v)"))
        exc = _raised(lambda: conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": huge}))
        conn.rollback()
    assert is_rejected_row(exc)
    assert not is_transient(exc)


def test_nul_in_text_is_a_rejected_row(engine: Engine) -> None:
    with engine.connect() as conn:
        exc = _raised(lambda: conn.execute(text("SELECT CAST(:v AS text)"), {"v": "a\x00b"}))
        conn.rollback()
    assert is_rejected_row(exc)


def test_programming_mistakes_are_not_transient() -> None:
    assert not is_transient(KeyError("x"))
    assert not is_transient(ValueError("x"))


def test_describe_names_codes_and_schema_never_values(engine: Engine) -> None:
    secret = f"subject-{secrets.token_hex(8)}"
    with engine.connect() as conn:
        conn.execute(
            text(
                "CREATE TEMP TABLE mail (subject text CONSTRAINT short CHECK (length(subject) < 5))"
            )
        )
        exc = _raised(lambda: conn.execute(text("INSERT INTO mail VALUES (:v)"), {"v": secret}))
        conn.rollback()
        cast = _raised(lambda: conn.execute(text("SELECT CAST(:v AS integer)"), {"v": secret}))
        conn.rollback()
    assert secret in str(exc)  # the driver's DETAIL quotes the failing row
    assert describe(exc) == (
        "IntegrityError: CheckViolation (SQLSTATE 23514, table mail, constraint short)"
    )
    assert secret in str(cast)  # 'invalid input syntax for type integer: "..."'
    assert describe(cast) == "DataError: InvalidTextRepresentation (SQLSTATE 22P02)"


def test_describe_keeps_what_a_connection_failure_says() -> None:
    dead = create_engine(
        normalise_database_url(f"postgresql://postgres@127.0.0.1:{free_port()}/x"),
        connect_args={"connect_timeout": 1},
    )
    described = describe(_raised(lambda: dead.connect().close()))
    assert described.startswith("OperationalError: OperationalError: connection")


def test_describe_of_an_s3_error_is_its_code(s3_endpoint: str) -> None:
    up = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )
    missing = _raised(lambda: up.get_object(Bucket="no-such-bucket", Key="k"))
    assert describe(missing) == "NoSuchBucket"
    assert describe(KeyError("payload-value")) == "KeyError"


def test_recursion_is_too_deep_nesting_even_inside_a_statement(engine: Engine) -> None:
    from sqlalchemy import JSON, Column, MetaData, Table

    deep: object = "leaf"
    for _ in range(5000):
        deep = [deep]
    table = Table("deep_doc", MetaData(), Column("doc", JSON), prefixes=["TEMPORARY"])
    with engine.connect() as conn:
        table.create(conn)
        exc = _raised(lambda: conn.execute(table.insert().values(doc=deep)))
        conn.rollback()
    assert is_too_deeply_nested(exc)
    assert not is_too_deeply_nested(ValueError("x"))
    assert is_too_deeply_nested(RecursionError())


# --- permanent event failures ------------------------------------------------------------


def test_event_failure_classes() -> None:
    from worker.ingest.parsing import LimitExceededError, PermanentEventError

    over = LimitExceededError("mime_parts", 1001, 1000, "MIME parts")
    assert event_failure_class(over) == "over_limit:mime_parts"
    assert event_failure_reason(over) == "the email has 1001 MIME parts, over the limit of 1000"
    assert event_failure_class(PermanentEventError("msg is not a JSON object")) == "invalid_event"
    assert event_failure_class(RecursionError()) == "invalid_event"
    assert "nested too deeply" in event_failure_reason(RecursionError())
    # Not the event's fault: the task's retry policy decides.
    assert event_failure_class(TimeoutError()) is None
    assert event_failure_class(KeyError("x")) is None


def test_a_rejected_row_is_the_events_failure_and_its_reason_quotes_nothing(
    engine: Engine,
) -> None:
    secret = f"subject-{secrets.token_hex(8)}"
    with engine.connect() as conn:
        exc = _raised(lambda: conn.execute(text("SELECT CAST(:v AS integer)"), {"v": secret}))
        conn.rollback()
    assert event_failure_class(exc) == "rejected_row"
    reason = event_failure_reason(exc)
    assert reason == (
        "database rejected the row: DataError: InvalidTextRepresentation (SQLSTATE 22P02)"
    )


# --- the retry policy --------------------------------------------------------------------

POLICY = Settings(
    _env_file=None,
    retry_deadline_seconds=3600,
    retry_backoff_max_seconds=60,
    unknown_error_retries=2,
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_backoff_doubles_with_full_jitter_up_to_the_cap() -> None:
    for retries, ceiling in [(0, 1), (1, 2), (3, 8), (5, 32), (6, 60), (40, 60)]:
        samples = [backoff_seconds(retries, 60) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples), retries


def test_transient_failures_are_retried_until_the_deadline() -> None:
    exc = TimeoutError()
    early = decide(exc, retries=3, received_at=NOW, now=NOW, settings=POLICY)
    assert isinstance(early, RetryLater)
    assert 4 <= early.countdown <= 8
    late = decide(
        exc,
        retries=80,
        received_at=NOW,
        now=NOW + timedelta(minutes=59, seconds=50),
        settings=POLICY,
    )
    assert late == GiveUp(
        "transient:TimeoutError",
        "TimeoutError persisted for 1 h (81 attempts); replay once the service is back",
    )


def test_unknown_failures_are_retried_a_few_times_then_given_up() -> None:
    exc = KeyError("x")
    assert isinstance(decide(exc, retries=0, received_at=NOW, now=NOW, settings=POLICY), RetryLater)
    assert isinstance(decide(exc, retries=1, received_at=NOW, now=NOW, settings=POLICY), RetryLater)
    gave_up = decide(exc, retries=2, received_at=NOW, now=NOW, settings=POLICY)
    assert isinstance(gave_up, GiveUp)
    assert gave_up.error_class == "unknown:KeyError"
