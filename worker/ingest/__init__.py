"""Ingest: one delivery in, its events parsed and their rows and objects stored.

What lives here, from the pure to the I/O:

- ``parsing/``: Mandrill events into frozen dataclasses; ``columns`` (the schema's
  lengths and text cleaning), ``derive`` and ``line_pattern`` (the derived columns),
  ``file_types`` (content types by magic numbers) and ``rows`` (a parsed email or event
  into the column values written). None of these does I/O: they import the standard
  library, each other and ``worker.interrupts`` only.
- ``storage/``: the statements that write those rows and the objects, split by what
  they write.
- ``context``, ``batch`` and ``commit``: the orchestration: a delivery's body loaded and
  archived, each event prepared and committed, failures turned into dead letters.

The room may import ``shared`` and the worker's own plumbing (errors, metrics, losses,
pending puts). Of the hand-off it uses the outbox only, through
``worker.ingest.storage.emails`` (a new email's dispatch row commits with the email), and
the ``NewDispatch`` value it hands back to the task; it never imports recovery.
"""
