"""Ingest: one delivery in, its events parsed and their rows and objects stored.

What lives here, from the pure to the I/O:

- ``parsing/``: Mandrill events into frozen dataclasses; ``columns`` (the schema's
  lengths and text cleaning), ``derive/`` (the derived columns),
  ``file_types`` (content types by magic numbers) and ``rows`` (a parsed email or event
  into the column values written). None of these does I/O: no database, object store,
  queue or network module (an import contract), only the standard library, each other,
  ``worker.interrupts`` and the text libraries the derivations and type sniffing use.
- ``trust/`` (the sender-trust verdict: DKIM and ARC with dkimpy, DMARC over DNS) and
  ``scan`` (attachments streamed to clamd): the email's columns that need network I/O,
  computed before its transaction (``commit.io_columns``) and handed to ``rows``.
- ``storage/``: the statements that write those rows and the objects, split by what
  they write.
- ``context``, ``batch`` and ``commit``: the orchestration: a delivery's body loaded and
  archived, each event prepared and committed, failures turned into dead letters.

The room may import ``shared`` and the worker's own plumbing (errors, metrics, losses,
pending puts). Of the hand-off it uses the outbox only: ``worker.ingest.storage.emails``
records a new email's dispatch row through it, in the email's transaction, and the
``NewDispatch`` values it gives back go to the task that hands them off. It never imports
recovery, nor the task modules.
"""
