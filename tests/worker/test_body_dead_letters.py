"""A delivery whose body cannot be processed, while its dead letter cannot be written
(the database unreachable, for real): the attempt fails for a retry and counts no
worker lost, so the retry records the right reason."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
import redis
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.accepted import AcceptedLedger
from shared.contract import payload_redis_key
from shared.models import DeadLetter
from shared.objectstore import S3ObjectStore
from tests.webhooks import received_in_redis
from worker.ingest.batch import process_delivery
from worker.ingest.context import IngestContext
from worker.losses import BODY_STAGE, LossTracker

pytestmark = pytest.mark.usefixtures("clean_db")

SessionFactory = Callable[[], AbstractContextManager[Session]]


@pytest.fixture
def unreachable() -> Iterator[Engine]:
    """An engine on a port nothing listens on: every connection is refused."""
    engine = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:9/kave", connect_args={"connect_timeout": 2}
    )
    yield engine
    engine.dispose()


def _down_after_first(up: Engine, down: Engine) -> SessionFactory:
    """Sessions on ``up`` for the attempt's first read, then on ``down``: the database
    goes away between the start of the attempt and its dead letter."""
    first = [sessionmaker(up)]
    later = sessionmaker(down)

    def session() -> Session:
        return (first.pop() if first else later)()

    return session


# error class -> (events, the digest its envelope names; None: the body's own)
BODIES: dict[str, tuple[str, str | None]] = {
    "unreadable": ("[]", "0" * 64),  # the body does not match its envelope
    "invalid_batch": ('{"not": "a list of events"}', None),
}


@pytest.mark.parametrize("error_class", list(BODIES))
def test_a_dead_letter_that_cannot_be_written_is_retried_not_counted_as_a_loss(
    clean_db: Engine,
    unreachable: Engine,
    object_store: S3ObjectStore,
    redis_client: redis.Redis,
    error_class: str,
) -> None:
    events, sha256 = BODIES[error_class]
    envelope = received_in_redis(redis_client, events, sha256=sha256)
    tracker = LossTracker(redis_client, envelope.delivery_id)
    ledger = AcceptedLedger("kave-test-body-dead-letters")
    down = IngestContext(
        session_factory=_down_after_first(clean_db, unreachable),
        object_store=object_store,
        redis=redis_client,
        ledger=ledger,
    )

    with pytest.raises(OperationalError):
        process_delivery(down, envelope)

    assert redis_client.exists(tracker.marker_key) == 0
    assert redis_client.exists(payload_redis_key(envelope.delivery_id)) == 1

    up = IngestContext(
        session_factory=sessionmaker(clean_db),
        object_store=object_store,
        redis=redis_client,
        ledger=ledger,
    )
    process_delivery(up, envelope)

    with Session(clean_db) as session:
        letters = session.execute(select(DeadLetter.delivery_id, DeadLetter.error_class)).all()
    assert [tuple(letter) for letter in letters] == [(envelope.delivery_id, error_class)]
    assert redis_client.exists(tracker.loss_key_prefix + BODY_STAGE) == 0
