"""Fill a scratch database to N emails with SQL alone (``generate_series``), in minutes.

The shape (issue 37): a year of mail, 20,000 senders (skewed: a few send much, most
rarely), 50 mailboxes on 5 domains, threads of up to 3 emails, 30% with attachments,
5 emails per delivery, one outcome row per email, a dead letter per 500 emails and a
tracking event per 10. Values are chosen so that each filter has a common, a rare and
an absent value (``Probes``). Works on the schema before migration 0012 (the columns
every revision since 0009 has): the bench migrates the filled database afterwards, as
an operator would.

``setseed`` makes a fill of the same N the same rows every time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, text

SENDERS = 20_000
MAILBOXES = 50
EMAILS_PER_DELIVERY = 5
DEAD_LETTER_EVERY = 500
EVENT_EVERY = 10

# Sender rank: floor(SENDERS * random()^3), so rank 0 sends ~3.7% of all mail and the
# ranks near SENDERS a handful each. Every tenth rank is spelled with capitals: the
# filters match case-insensitively.
_SENDER = "floor({senders} * power(random(), 3))::int"


def _address(rank: str) -> str:
    return (
        f"(CASE WHEN {rank} % 10 = 0 THEN 'Person' ELSE 'person' END) || {rank}"
        f" || '@d' || ({rank} % 2000) || '.example'"
    )


_DELIVERIES = """
INSERT INTO deliveries (id, received_at, request_id, body_sha256, body_size, archive_key,
                        status, event_count, attempts, created_at, handled_at)
SELECT 'dlv-' || lpad(d::text, 12, '0'), at, 'req-' || d, md5(d::text) || md5(d::text),
       10000, 'archive/' || md5(d::text) || '.form', 'processed', {per}, 1, at, at
FROM (SELECT d, now() - interval '365 days' * (1 - d::float8 / :deliveries) AS at
      FROM generate_series(1, :deliveries) AS d) AS s
"""

_EMAILS = """
INSERT INTO emails (dedup_key, message_id, raw_sha256, raw_size, raw_key, envelope_recipient,
    from_address, from_name, "to", cc, bcc, reply_to, subject, sent_at, in_reply_to,
    "references", text_body, html_body, headers, tags, spam_score, spam_rules, spf_result,
    spf_detail, dkim_signed, dkim_valid, mandrill_ts, conversation_id, mailbox_hash,
    reply_text, auto_submitted, bounced_addresses, bulk, charset_refused, delivery_id,
    received_at)
SELECT md5(i::text) || md5('k' || i), '<m' || i || '@gen.example>',
    md5('r' || i) || md5('s' || i), 5000, 'messages/' || md5('r' || i) || '.eml', mailbox,
    sender, 'Person ' || rank, to_list, cc_list, '[]', '[]', subject, at,
    CASE WHEN i % 3 <> 0 THEN '<m' || (i - 1) || '@gen.example>' END,
    CASE WHEN i % 3 <> 0 THEN jsonb_build_array('<m' || (i - 1) || '@gen.example>')
         ELSE '[]' END,
    body, CASE WHEN r_html < 0.3 THEN '<p>' || body || '</p>' END,
    jsonb_build_array(jsonb_build_array('From', sender), jsonb_build_array('To', mailbox),
                      jsonb_build_array('Subject', subject),
                      jsonb_build_array('Message-ID', '<m' || i || '@gen.example>')),
    '[]', round((r_spam * 6)::numeric, 1)::float8, '[]',
    CASE WHEN r_spf < 0.85 THEN 'pass' WHEN r_spf < 0.93 THEN 'softfail'
         WHEN r_spf < 0.96 THEN 'fail' WHEN r_spf < 0.99 THEN 'neutral' ELSE 'none' END,
    'spf detail', true, r_spf < 0.9, at, 'conv-' || (i / 3), md5(mailbox), body, false, '[]',
    false, false, 'dlv-' || lpad(((i - 1) / {per} + 1)::text, 12, '0'), at
FROM (
    SELECT i, rank, at, r_html, r_spam, r_spf, sender, mailbox, subject,
        'Hello,' || chr(10) || repeat(md5(i::text) || ' ', 20) || chr(10) || 'Thanks, '
            || sender AS body,
        jsonb_build_array(jsonb_build_object('name', 'Box', 'address', mailbox))
            || CASE WHEN i % 20 = 7
                    THEN jsonb_build_array(jsonb_build_object('name', NULL, 'address',
                         replace(mailbox, '@', '+t' || i || '@')))
                    ELSE '[]' END AS to_list,
        CASE WHEN r_cc < 0.2
             THEN jsonb_build_array(jsonb_build_object('name', NULL, 'address', cc_addr))
             ELSE '[]'::jsonb END AS cc_list
    FROM (
        SELECT i, rank, at, random() AS r_html, random() AS r_spam, random() AS r_spf,
            random() AS r_cc, {sender} AS sender, {cc} AS cc_addr,
            'box' || (i % {mailboxes}) || '@mail' || (i % 5) || '.example' AS mailbox,
            CASE i % 10 WHEN 0 THEN 'Invoice ' WHEN 1 THEN 'Re: meeting notes '
                 WHEN 2 THEN 'Your order ' ELSE 'Question about ' END
                || 'REF-' || lpad(i::text, 8, '0') AS subject
        FROM (
            SELECT i, {rank} AS rank, {rank2} AS rank2,
                now() - interval '365 days' * (1 - ((i - 1) / {per} + 1)::float8 / :deliveries)
                    + ((i - 1) % {per}) * interval '1 millisecond' AS at
            FROM generate_series(1, :emails) AS i
        ) AS base
    ) AS picked
) AS shaped
ORDER BY i
"""

# 30% of the emails have one attachment; a third of those a second one.
_ATTACHMENTS = """
INSERT INTO attachments (email_id, position, filename, content_type, size, sha256, object_key,
                         inline, type_mismatch)
SELECT e.id, p, 'file-' || e.id || '-' || p || '.pdf', 'application/pdf', 20000,
       md5('a' || e.id || p) || md5('b' || e.id || p),
       'attachments/' || md5('a' || e.id || p) || md5('b' || e.id || p), false, false
FROM emails AS e, generate_series(0, 1) AS p
WHERE e.id % 10 < 3 AND (p = 0 OR e.id % 3 = 0)
"""

_OUTCOMES = """
INSERT INTO delivery_events (delivery_id, index, kind, outcome, email_id, created_at)
SELECT delivery_id, ((id - 1) % {per})::int, 'inbound', 'stored', id, received_at FROM emails
"""

# One dead letter per DEAD_LETTER_EVERY emails, on distinct deliveries; a third open.
_DEAD_LETTERS = """
INSERT INTO dead_letters (delivery_id, event_index, kind, error_class, message, attempts,
                          status, first_seen_at, last_seen_at, resolved_at)
SELECT d.id, 0, CASE WHEN k % 7 = 0 THEN 'dispatch' ELSE 'inbound' END,
       CASE WHEN k % 97 = 0 THEN 'worker_lost' WHEN k % 5 = 0
            THEN 'transient:OperationalError' ELSE 'invalid_event' END,
       'synthetic failure', 1,
       CASE k % 3 WHEN 0 THEN 'open' WHEN 1 THEN 'discarded' ELSE 'replayed' END,
       d.received_at, d.received_at + interval '1 minute',
       CASE WHEN k % 3 <> 0 THEN d.received_at + interval '1 hour' END
FROM generate_series(1, :dead_letters) AS k
JOIN deliveries AS d ON d.id = 'dlv-' || lpad((k * {spread})::text, 12, '0')
"""

_EVENTS = """
INSERT INTO events (dedup_key, kind, occurred_at, mandrill_id, recipient, payload,
                    delivery_id, created_at)
SELECT md5('ev' || k) || md5('ew' || k),
       (ARRAY['send', 'open', 'click', 'deferral', 'hard_bounce'])[1 + k % 5],
       d.received_at, 'mid-' || k, {recipient}, jsonb_build_object('event', 'open', 'k', k),
       d.id, d.received_at
FROM (SELECT k, {rank} AS rank FROM generate_series(1, :events) AS k) AS s
JOIN deliveries AS d ON d.id = 'dlv-' || lpad((1 + k % :deliveries)::text, 12, '0')
"""


@dataclass(frozen=True)
class Counts:
    emails: int

    @property
    def deliveries(self) -> int:
        return -(-self.emails // EMAILS_PER_DELIVERY)

    @property
    def dead_letters(self) -> int:
        return max(self.emails // DEAD_LETTER_EVERY, 1)

    @property
    def events(self) -> int:
        return max(self.emails // EVENT_EVERY, 1)


def fill(connection: Connection, emails: int, progress: Callable[[str], None]) -> dict[str, float]:
    """Fill the (empty, migrated) database behind ``connection``; seconds per table."""
    counts = Counts(emails)
    rank = _SENDER.format(senders=SENDERS)
    params = {
        "emails": counts.emails,
        "deliveries": counts.deliveries,
        "dead_letters": counts.dead_letters,
        "events": counts.events,
    }
    statements = {
        "deliveries": _DELIVERIES.format(per=EMAILS_PER_DELIVERY),
        "emails": _EMAILS.format(
            per=EMAILS_PER_DELIVERY,
            mailboxes=MAILBOXES,
            rank=rank,
            rank2=rank,
            sender=_address("rank"),
            cc=_address("rank2"),
        ),
        "attachments": _ATTACHMENTS,
        "delivery_events": _OUTCOMES.format(per=EMAILS_PER_DELIVERY),
        "dead_letters": _DEAD_LETTERS.format(
            spread=max(counts.deliveries // counts.dead_letters, 1)
        ),
        "events": _EVENTS.format(rank=rank, recipient=_address("rank")),
    }
    seconds: dict[str, float] = {}
    connection.execute(text("SELECT setseed(0.37)"))
    for table, statement in statements.items():
        started = time.perf_counter()
        connection.execute(text(statement), params)
        connection.commit()
        seconds[table] = time.perf_counter() - started
        progress(f"  filled {table} in {seconds[table]:.1f} s")
    started = time.perf_counter()
    connection.execute(text("VACUUM (ANALYZE)"))
    seconds["vacuum_analyze"] = time.perf_counter() - started
    return seconds
