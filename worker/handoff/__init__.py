"""Hand-off: every new email handed to the platform by the route it matches, at least once.

What lives here: ``routes`` (the routes file: parsed, validated, matched), ``outbox``
(the dispatch row inserted with each new email, in its transaction), ``inline`` (which
new dispatches the storing worker hands off itself), ``dispatch`` (claim, hand off,
sweep), ``attempt`` (one attempt and its record: retries with backoff, dead letters),
``http`` (the signed POST and its body), ``document`` (the JSON an HTTP handler gets),
``held`` (dispatches of ``after: text`` routes, released once the attachments' text is
final), ``metrics`` and ``tasks`` (the Celery tasks ``kave.dispatch.publish`` and
``kave.dispatch.sweep``).

It may import ``shared`` and the worker's plumbing (interrupts, resources), and of ingest
only the pure ``columns`` and the dead-letter writer (``worker.ingest.storage.dead_letters``,
the one place that writes dead letters). It never imports recovery: replays call into it.
Ingest reaches it only through ``outbox`` (see pyproject.toml's import contracts).
"""
