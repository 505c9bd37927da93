"""The queue's ceiling: a Celery task that does nothing with a message of a given size.

Same broker, same Celery configuration as Kave's workers (``shared.queue.celery_config``:
acks late, prefetch 1, the same transport options), started with the same worker command
line; the task only counts itself in Redis, so the bench can tell when all are done.

    celery -A bench.noop_worker worker -Q kave-bench-noop ...
"""

from __future__ import annotations

from functools import cache

from celery import Celery
from redis import Redis

from bench.noop_task import DONE_KEY, NOOP_QUEUE, NOOP_TASK
from shared.queue import celery_config
from shared.settings import get_settings

settings = get_settings()
app = Celery("kave-bench-noop")
app.conf.update(celery_config(settings))
app.conf.task_routes = {NOOP_TASK: {"queue": NOOP_QUEUE}}


@cache
def _redis() -> Redis:
    return Redis.from_url(settings.require_redis_url())


@app.task(name=NOOP_TASK)
def noop(payload: str) -> None:
    _redis().incr(DONE_KEY)
