"""Per-day, per-domain inbound counts (``domain_activity``), for the per-domain silence
gauge of the API's ``/metrics`` (api/pipeline_metrics.py).

Counted in the transaction that stores a new email, so the count moves exactly when the
email row commits (a duplicate or a rolled-back attempt counts nothing). The upsert is
the transaction's last statement, after the objects are stored: every email of a busy
domain updates the same row, and holding its lock only up to the commit keeps workers
from queueing behind each other's uploads.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from worker.ingest.columns import bounded, without_nul

# now() is the transaction's start, the email row's received_at default: the same day
# and instant as the row.
_COUNT = text(
    """
    INSERT INTO domain_activity (day, domain, emails, last_received_at)
    VALUES ((now() AT TIME ZONE 'UTC')::date, :domain, 1, now())
    ON CONFLICT (day, domain) DO UPDATE SET
        emails = domain_activity.emails + 1,
        last_received_at = greatest(domain_activity.last_received_at, excluded.last_received_at)
    """
)


def recipient_domain(envelope_recipient: str | None) -> str | None:
    """The domain the gauge groups by: after the first ``@``, lower-cased (as the SQL
    ``lower(split_part(envelope_recipient, '@', 2))`` of migration 0012's backfill)."""
    if not envelope_recipient or "@" not in envelope_recipient:
        return None
    return bounded(without_nul(envelope_recipient.split("@")[1].lower()))


def count_inbound(session: Session, envelope_recipient: str | None) -> None:
    """Count one new email for its recipient's domain (none without a domain)."""
    domain = recipient_domain(envelope_recipient)
    if domain:
        session.execute(_COUNT, {"domain": domain})
