"""Kave's benchmark suite: the stages of one command, ``python -m bench.run`` (``make bench``).

- ``run.py``: the command, its stages and ``--only``; ``report.py``: the table it prints;
- the default run: ``receiver_bench``, ``worker_bench``, ``memory_bench``,
  ``growth_bench``, with what they start (``stack.py``: Redis, PostgreSQL, S3, uvicorn,
  Celery), the bare ceiling app (``ceiling_app.py``), the no-op Celery worker
  (``noop_worker.py``, ``noop_task.py``), wrk's script (``post.lua``) and its installer
  (``ensure-wrk``);
- ``hostile/``: the hostile-input stages, on request only;
- scripts of their own for Redis beyond one node: ``failover_bench`` (a Sentinel
  failover under traffic, with and without replica acknowledgement: what is lost) and
  ``replica_ack_bench`` (the receiver's throughput with and without ``WAIT 1``).
- ``scale/``: the scale bench, its own command (``python -m bench.scale``, ``make
  bench-scale``): a database filled to N emails, every list filter and operator command.

It may import :mod:`loadkit` (what it shares with the tests), :mod:`kave.devstack` and
the product packages it starts, feeds and times. Nothing imports it: not the product
(an import-linter contract), not :mod:`loadkit`, not the tests. Its figures are written
down in BENCHMARKS.md and RELIABILITY.md, not asserted; the tests assert.
"""
