"""The time-to-agent stage of ``make bench`` (issue 35): how long from Mandrill's POST to
the platform's HTTP handler receiving the email, at stepped offered rates, for the stack
of ``kave run`` and for a ceiling stack whose delivery task only POSTs a stub.

- :mod:`~bench.tta.handler`: the agent's HTTP handler, a process that verifies the
  Standard Webhooks signature and records when each email arrived;
- :mod:`~bench.tta.ceiling_worker`: the ceiling's Celery app (no parse, no store);
- :mod:`~bench.tta.stacks`: both stacks, started as ``kave run`` starts its children;
- :mod:`~bench.tta.load`: the open-loop sender and the figures of a step;
- :mod:`~bench.tta.stage`: the stage itself, its table and its plot.
"""
