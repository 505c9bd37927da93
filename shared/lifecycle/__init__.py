"""Data lifecycle: what is kept, for how long, and proof that nothing is lost or orphaned.

- ``objects``: which object keys rows still name, and removing those no row names
  (the ``object_deletions`` to-do list that makes every deletion crash-safe);
- ``erase``: erasure on request, by address or email (``kave erase``, the API);
- ``erased``: the refusal to process an erased delivery again (replay, retry, reconcile,
  reprocess);
- ``purge``: retention per kind (``kave purge``, the beat task).

``kave audit``, which compares the object store with the rows, lives with its one user,
in ``kave/audit.py``; it reads these modules' notion of a referenced key.

Rows always go first, in one transaction with the keys of the objects they named; the
objects follow, each only once no row names it any more.
"""
