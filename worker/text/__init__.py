"""Attachment text: each distinct attachment (by sha256) converted to Markdown once, off
the ingest path, under bounds.

What lives here: ``bounds`` (size, expansion and page checks before a document is opened),
``child`` (the converter's own process: kreuzberg under rlimits), ``convert`` (one
bounded conversion: the child started, limited, killed at the wall-time bound),
``service`` (the rows and the text object: claim, convert, store, copy to every row of
the same content, release held hand-offs), ``tasks`` (``kave.text.convert`` on its own
queue, and ``kave.text.sweep`` on beat's timer).

It may import ``shared``, ingest's pure ``derive.text_formats`` and the hand-off's
``held`` (the dispatches waiting for text). Neither ingest nor the hand-off imports it:
the ingest task queues conversions by name after its commit.
"""
