"""``kave emails`` and ``kave deliveries``: what the pipeline stored, for people."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from shared.db import make_engine, make_session_factory
from shared.models import Delivery, Email
from shared.objectstore import make_object_store
from shared.queries.deliveries import outcome_counts
from shared.settings import Settings


def _addresses(values: list[dict[str, str | None]]) -> str:
    return ", ".join(str(item.get("address")) for item in values) or "-"


def print_emails(settings: Settings, *, limit: int) -> int:
    engine = make_engine(settings)
    store = make_object_store(settings)
    try:
        with make_session_factory(engine)() as session:
            emails = session.scalars(
                select(Email)
                .options(selectinload(Email.attachments))
                .order_by(Email.id.desc())
                .limit(limit)
            ).all()
            if not emails:
                print("no emails stored yet")
            for email in emails:
                print(f"email {email.id}  {email.received_at:%Y-%m-%d %H:%M:%S}  {email.subject!r}")
                print(f"  from      {email.from_name or ''} <{email.from_address}>")
                print(f"  to        {_addresses(email.to)}   cc {_addresses(email.cc)}")
                print(f"  envelope  {email.envelope_recipient}   message-id {email.message_id}")
                print(
                    f"  verdicts  spam {email.spam_score}  spf {email.spf_result}  "
                    f"dkim signed={email.dkim_signed} valid={email.dkim_valid}"
                )
                print(f"  raw       {email.raw_key} ({email.raw_size} bytes)")
                for a in email.attachments:
                    kind = "inline" if a.inline else "attachment"
                    print(
                        f"  {kind:<11}{a.filename!r} {a.content_type} {a.size} bytes "
                        f"sha256 {a.sha256[:16]}… -> {a.object_key}  "
                        f"text {a.text_status or '-'}"
                    )
            print(f"objects are in {store.describe()}")
    finally:
        engine.dispose()
    return 0


def print_deliveries(settings: Settings, *, limit: int) -> int:
    engine = make_engine(settings)
    try:
        with make_session_factory(engine)() as session:
            deliveries = session.scalars(
                select(Delivery).order_by(Delivery.received_at.desc()).limit(limit)
            ).all()
            if not deliveries:
                print("no deliveries received yet")
            counts = outcome_counts(session, [delivery.id for delivery in deliveries])
            for delivery in deliveries:
                outcomes = counts[delivery.id]
                print(
                    f"{delivery.id}  {delivery.received_at:%Y-%m-%d %H:%M:%S}  "
                    f"{delivery.status:<9} events={delivery.event_count} {outcomes} "
                    f"size={delivery.body_size}"
                    + (f"  error: {delivery.error}" if delivery.error else "")
                )
    finally:
        engine.dispose()
    return 0
