"""Storage: the statements that write an ingested event's rows and objects, and nothing else.

Objects are written before the rows that point at them, so a committed row never names
a missing object; object keys are content-addressed, so writing them again is harmless.
Rows are inserted with ``ON CONFLICT DO NOTHING`` on their natural keys, so a replayed
delivery or a second copy of an email finds its row instead of adding one.

One module per thing written: ``objects`` (the raw message and attachments in the object
store), ``deliveries`` (the delivery row and its per-event outcomes), ``emails`` (emails,
attachments and events, with the hand-off's outbox row), ``threads`` (the conversation a
reply takes from a stored parent: a read, before the email's rows are written),
``dead_letters`` (the only writer of dead letters), ``activity`` (the per-domain count
of new emails, in the same transaction). The values written come from
``worker.ingest.rows``, which computes; these modules only run statements. They may
import ``shared`` (models, the object store), ``worker.ingest.rows`` and the parser's
types, and of the hand-off only ``worker.handoff.outbox`` (see pyproject.toml's import
contracts).
"""
