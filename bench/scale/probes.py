"""The requests the scale bench times: every list filter of the management API, each
with a common, a rare and an absent value, run through the API's own query functions
(api/*/queries.py, shared/queries/), and the per-domain gauge of ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from api.dead_letters.queries import list_dead_letters
from api.deliveries.queries import DeliveryFilters, list_deliveries
from api.emails.queries import EmailFilters, list_emails
from api.events.queries import EventFilters, list_events
from api.pagination import Cursor
from api.pipeline_metrics import PipelineCollector
from shared.queries.dead_letters import DeadLetterFilters

PAGE = 50  # the API's default page size


@dataclass(frozen=True)
class Probe:
    list_name: str
    request: str  # as a client would write it
    run: Callable[[Session], Any]
    plan_of: str = ""  # the statement whose plan is shown: the first containing this


def _emails(f: EmailFilters, cursor: Cursor | None = None) -> Callable[[Session], Any]:
    return lambda s: list_emails(s, f, cursor=cursor, limit=PAGE)


def _deliveries(f: DeliveryFilters) -> Callable[[Session], Any]:
    return lambda s: list_deliveries(s, f, cursor=None, limit=PAGE)


def _dead_letters(f: DeadLetterFilters) -> Callable[[Session], Any]:
    return lambda s: list_dead_letters(s, f, cursor=None, limit=PAGE)


def _events(f: EventFilters) -> Callable[[Session], Any]:
    return lambda s: list_events(s, f, cursor=None, limit=PAGE)


def _one(engine: Engine, sql: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(text(sql)).scalar()


def probes(engine: Engine) -> list[Probe]:
    """The probes, with rare values read from the filled data."""
    rare_sender = _one(
        engine, "SELECT from_address FROM emails GROUP BY 1 HAVING count(*) = 1 LIMIT 1"
    )
    rare_cc = _one(
        engine,
        "SELECT cc -> 0 ->> 'address' FROM emails WHERE cc <> '[]' "
        "GROUP BY 1 HAVING count(*) = 1 LIMIT 1",
    )
    with engine.connect() as connection:
        middle, middle_id = connection.execute(
            text(
                "SELECT received_at, id FROM emails ORDER BY id "
                "OFFSET (SELECT count(*) / 2 FROM emails) LIMIT 1"
            )
        ).one()
    delivery = _one(engine, "SELECT delivery_id FROM dead_letters LIMIT 1")
    rare_event_recipient = _one(
        engine, "SELECT recipient FROM events GROUP BY 1 HAVING count(*) = 1 LIMIT 1"
    )
    day = timedelta(days=1)
    e = EmailFilters
    found: list[Probe] = [
        Probe("emails", "newest page", _emails(e())),
        Probe("emails", "cursor page (mid-year)", _emails(e(), Cursor(middle, middle_id))),
        Probe("emails", "since/until one day", _emails(e(since=middle - day, until=middle))),
        Probe("emails", "sender= common (upper case)", _emails(e(sender="PERSON0@D0.EXAMPLE"))),
        Probe("emails", "sender= rare", _emails(e(sender=rare_sender or "x@y.z"))),
        Probe("emails", "sender= absent", _emails(e(sender="nobody@absent.example"))),
        Probe("emails", "recipient= mailbox", _emails(e(recipient="Box0@mail0.example"))),
        Probe("emails", "recipient= +tag (rare)", _emails(e(recipient="box7+t7@mail2.example"))),
        Probe("emails", "recipient= Cc (rare)", _emails(e(recipient=rare_cc or "x@y.z"))),
        Probe("emails", "recipient= absent", _emails(e(recipient="nobody@absent.example"))),
        Probe("emails", "subject= common word", _emails(e(subject="invoice"))),
        Probe("emails", "subject= reference (rare)", _emails(e(subject="ref-00000007"))),
        Probe("emails", "subject= absent", _emails(e(subject="zebracorn"))),
        Probe("emails", "has_attachments=true", _emails(e(has_attachments=True))),
        Probe("emails", "has_attachments=false", _emails(e(has_attachments=False))),
        Probe("emails", "spf= pass (common)", _emails(e(spf_result="PASS"))),
        Probe("emails", "spf= none (rare)", _emails(e(spf_result="none"))),
        Probe("emails", "spf= absent", _emails(e(spf_result="temperror"))),
        Probe("emails", "max_spam_score=5 (common)", _emails(e(max_spam_score=5.0))),
        Probe("emails", "max_spam_score=0 (rare)", _emails(e(max_spam_score=0.0))),
        Probe("emails", "max_spam_score=-1 (absent)", _emails(e(max_spam_score=-1.0))),
        Probe("deliveries", "newest page", _deliveries(DeliveryFilters())),
        Probe("deliveries", "status=processed", _deliveries(DeliveryFilters(status="processed"))),
        Probe(
            "deliveries", "status=failed (absent)", _deliveries(DeliveryFilters(status="failed"))
        ),
        Probe(
            "deliveries",
            "since/until one day",
            _deliveries(DeliveryFilters(since=middle - day, until=middle)),
        ),
        Probe("dead letters", "newest page", _dead_letters(DeadLetterFilters())),
        Probe("dead letters", "status=open", _dead_letters(DeadLetterFilters(status="open"))),
        Probe("dead letters", "kind=dispatch", _dead_letters(DeadLetterFilters(kind="dispatch"))),
        Probe(
            "dead letters",
            "error_class= rare",
            _dead_letters(DeadLetterFilters(error_class="worker_lost")),
        ),
        Probe(
            "dead letters",
            "error_class= absent",
            _dead_letters(DeadLetterFilters(error_class="nothing_like_it")),
        ),
        Probe(
            "dead letters", "delivery_id=", _dead_letters(DeadLetterFilters(delivery_id=delivery))
        ),
        Probe("events", "newest page", _events(EventFilters())),
        Probe("events", "kind=open", _events(EventFilters(kind="open"))),
        Probe(
            "events",
            "recipient= rare",
            _events(EventFilters(recipient=(rare_event_recipient or "x@y.z").upper())),
        ),
        Probe("events", "recipient= absent", _events(EventFilters(recipient="no@absent.example"))),
    ]
    collector = PipelineCollector(engine, None, "unused")  # type: ignore[arg-type]
    found.append(
        Probe(
            "metrics",
            "per-domain silence (30 days)",
            lambda _s: collector._read_database(),
            plan_of="domain_activity",
        )
    )
    return found
