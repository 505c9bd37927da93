"""Exceptions that interrupt a task from outside and must never be swallowed.

Celery's soft time limit raises ``SoftTimeLimitExceeded`` (an ordinary ``Exception``)
from a signal handler, inside whatever line the task is running at that moment: a
parser's guard, a driver's wait, an upload. A broad ``except Exception`` that turns
errors into defaults or permanent failures would swallow it, and the task would run on
until the hard limit kills its process. So every broad ``except`` in the worker lets
these through first (``except INTERRUPTS: raise``), and ``worker.errors`` classifies
them as transient: the delivery is retried like any other interrupted attempt.

No I/O here: the pure parser imports this module too.
"""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded

INTERRUPTS: tuple[type[BaseException], ...] = (SoftTimeLimitExceeded,)
