"""Names shared by the no-op worker (``bench.noop_worker``) and the bench that feeds it."""

NOOP_TASK = "kave.bench.noop"
NOOP_QUEUE = "kave-bench-noop"
DONE_KEY = "kave-bench:noop-done"
