"""Recovery: what an operator (or the reconciliation beat) runs when ingest did not finish.

What lives here: ``replay`` (an open dead letter processed again: an event, a whole
delivery or a dead dispatch), ``reprocess`` (stored deliveries parsed again by today's
code, their rows brought up to date) and ``reconcile`` (accepted deliveries whose task
was lost, queued again).

It may import ``shared``, the ingest room (recovery re-runs ingest's own steps) and the
hand-off's tasks (a dead dispatch is replayed by the dispatcher). Neither ingest nor the
hand-off imports it (pyproject.toml's import contracts): recovery sits on top of them.
"""
