"""The scrape-time pipeline gauges, read from a real PostgreSQL and Redis."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from celery import Celery
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from api.pipeline_metrics import PipelineCollector, scrape_redis
from shared.contract import PROCESS_DELIVERY_TASK, RECONCILE_TASK, Envelope
from shared.models import DomainActivity
from shared.queue import celery_config
from shared.settings import Settings
from tests.rows import add_stored_email
from worker.ingest.storage.activity import recipient_domain

THRESHOLD = 3600.0


def add_email(engine: Engine, recipient: str | None, received_at: datetime) -> None:
    """An email row and its count in domain_activity, as the worker writes them."""
    with Session(engine) as session, session.begin():
        add_stored_email(session, received_at=received_at, envelope_recipient=recipient)
        domain = recipient_domain(recipient)
        if domain:
            row = {"day": received_at.date(), "domain": domain, "last_received_at": received_at}
            insert = pg_insert(DomainActivity).values(emails=1, **row)
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=[DomainActivity.day, DomainActivity.domain],
                    set_={"emails": DomainActivity.emails + 1},
                )
            )


def scrape(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def gauge(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = scrape(registry, name, **labels)
    assert value is not None, f"{name}{labels} missing"
    return value


@pytest.fixture
def queue_name() -> str:
    return f"kave-metrics-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def registry(
    clean_db: Engine, redis_client: redis.Redis, queue_name: str
) -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    PipelineCollector(
        clean_db, redis_client, queue_name, silence_threshold_seconds=THRESHOLD, top_domains=2
    ).register(registry)
    yield registry
    redis_client.delete(queue_name)


def test_silence_gauge_crosses_the_threshold_without_mail_and_drops_with_it(
    registry: CollectorRegistry, clean_db: Engine
) -> None:
    assert scrape(registry, "kave_inbound_silence_threshold_seconds") == THRESHOLD
    # Nothing ever received: as silent as can be.
    assert scrape(registry, "kave_inbound_last_email_age_seconds", domain="all") == math.inf

    now = datetime.now(UTC)
    add_email(clean_db, "a@Example.COM", now - timedelta(hours=2))
    silent = gauge(registry, "kave_inbound_last_email_age_seconds", domain="all")
    assert silent > THRESHOLD
    per_domain = gauge(registry, "kave_inbound_last_email_age_seconds", domain="example.com")
    assert per_domain > THRESHOLD

    add_email(clean_db, "b@example.org", now)
    fresh = gauge(registry, "kave_inbound_last_email_age_seconds", domain="all")
    assert fresh < 60
    # The silent domain stays silent: a per-domain series shows which inbound broke.
    still = gauge(registry, "kave_inbound_last_email_age_seconds", domain="example.com")
    assert still > THRESHOLD
    assert scrape(registry, "kave_api_metrics_source_up", source="postgresql") == 1


def test_domains_are_bounded_to_the_busiest(registry: CollectorRegistry, clean_db: Engine) -> None:
    now = datetime.now(UTC)
    for _ in range(3):
        add_email(clean_db, "x@busy.example", now)
    for _ in range(2):
        add_email(clean_db, "x@middle.example", now)
    add_email(clean_db, "x@rare.example", now)
    add_email(clean_db, None, now)  # no recipient: counted in "all" only

    domains = {
        sample.labels["domain"]
        for family in registry.collect()
        if family.name == "kave_inbound_last_email_age_seconds"
        for sample in family.samples
    }
    assert domains == {"all", "busy.example", "middle.example"}


def test_queue_age_is_the_oldest_waiting_task(
    registry: CollectorRegistry, base_settings: Settings, queue_name: str
) -> None:
    assert scrape(registry, "kave_queue_oldest_task_age_seconds", queue=queue_name) == 0.0
    assert scrape(registry, "kave_api_metrics_source_up", source="redis") == 1

    # Published the way the receiver publishes, to a queue no worker consumes.
    app = Celery("test-pipeline-metrics")
    app.conf.update(celery_config(base_settings))
    # The oldest message has no envelope: the age comes from the ones after it.
    app.send_task(RECONCILE_TASK, queue=queue_name)
    now = datetime.now(UTC)
    for age in (600, 30):
        envelope = Envelope(
            delivery_id=str(uuid.uuid4()),
            received_at=(now - timedelta(seconds=age)).isoformat(),
            body_sha256="0" * 64,
            body_size=1,
            payload_store="redis",
            payload_key="kave:payload:x",
            request_id="req",
        )
        app.send_task(
            PROCESS_DELIVERY_TASK, kwargs={"envelope": envelope.to_message()}, queue=queue_name
        )
    try:
        oldest = gauge(registry, "kave_queue_oldest_task_age_seconds", queue=queue_name)
        assert 600 <= oldest < 660
        # The backlog gauges read the same queue in the same scrape.
        assert gauge(registry, "kave_queue_depth", queue=queue_name) == 3
        assert 600 <= gauge(registry, "kave_oldest_unfinished_delivery_age_seconds") < 660
    finally:
        app.close()


def test_unreachable_sources_leave_their_series_out(clean_db: Engine) -> None:
    registry = CollectorRegistry()
    dead = scrape_redis(
        Settings(_env_file=None, env="test", redis_url="redis://127.0.0.1:1/0"), timeout=0.5
    )
    PipelineCollector(clean_db, dead, "kave").register(registry)
    assert scrape(registry, "kave_api_metrics_source_up", source="redis") == 0
    assert scrape(registry, "kave_queue_oldest_task_age_seconds", queue="kave") is None
    # The backlog gauges of that source read NaN; PostgreSQL's still answer.
    assert math.isnan(gauge(registry, "kave_queue_depth", queue="kave"))
    assert scrape(registry, "kave_api_metrics_source_up", source="postgresql") == 1
    assert gauge(registry, "kave_dead_letters_open") == 0
