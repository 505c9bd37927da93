"""Data lifecycle: what is kept, for how long, and proof that nothing is lost or orphaned.

- ``objects``: which object keys rows still name, and removing those no row names
  (the ``object_deletions`` to-do list that makes every deletion crash-safe);
- ``audit``: the object store compared with the rows (``kave audit``);
- ``erase``: erasure on request, by address or email (``kave erase``, the API);
- ``erased``: the refusal to process an erased delivery again (replay, retry, reconcile,
  reprocess);
- ``purge``: retention per kind (``kave purge``, the beat task).

Rows always go first, in one transaction with the keys of the objects they named; the
objects follow, each only once no row names it any more.
"""
