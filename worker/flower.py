"""The instance ``celery flower`` loads: ``celery -A worker.flower flower``.

The same Celery app as ``worker.main``, with Kave's logging pipeline installed, so that
Flower's and tornado's lines are structured (JSON in production) and redacted like every
other process's, instead of tornado's plain text. Basic auth comes from Flower's own
``FLOWER_BASIC_AUTH=user:password``; ``docker-compose.yml``, the Kubernetes base and
``kave run`` always set it. In production Flower refuses to start without it: Flower
itself would serve every task's arguments and the workers' controls to anyone.

Under Sentinel, Flower's queue lengths (``/api/queues/length``, the Broker page) are
read with Kave's own Redis client (``shared.redis_connect``). Flower's own (flower 2.2)
asks only the first Sentinel listed and reads database 0 whatever ``KAVE_REDIS_URL``
says: it answered 500 while that Sentinel was down, and otherwise counted database 0's
queues (empty, usually) instead of the workers'. The rest of Flower goes through Celery,
which asks every Sentinel. ``tests/ops/test_sentinel_processes.py`` runs into both.
"""

import sys
from typing import Any

from flower.utils import broker as flower_broker
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shared.logging import configure_logging
from shared.redis_connect import async_redis_client
from shared.settings import Settings, SettingsError, get_settings
from worker.celery_app import create_celery_app


def _production_settings_or_exit() -> Settings:
    """The settings, or exit with a message (not a traceback) when Flower must not run."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        sys.exit(f"flower: {exc}")
    # As the flower process, production's checks refuse a missing or weak
    # FLOWER_BASIC_AUTH; a KAVE_PROCESS that would skip them is refused first.
    try:
        settings.require_process("flower")
    except SettingsError as exc:
        sys.exit(f"flower: {exc}")
    return settings


def _sentinel_queue_reader(settings: Settings) -> type:
    """Flower's Sentinel broker class, its client built as every Kave process builds one."""

    class SentinelQueues(flower_broker.RedisSentinel):  # type: ignore[misc]
        def _get_redis_client(self, *_: Any) -> Any:
            # Flower's own timeouts; no retry, as Flower's: the page answers quickly.
            return async_redis_client(
                settings,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.socket_connect_timeout,
                retry=Retry(NoBackoff(), 0),
            )

    return SentinelQueues


settings = _production_settings_or_exit()
# Flower hands nothing off, so it neither reads the routes file nor holds the secrets its
# routes name (only the worker does; `kave run` gives them to it alone). With the file
# set, the app's start-up check would refuse Flower for lacking those secrets.
app = create_celery_app(settings.model_copy(update={"handoff_routes_file": None}))
configure_logging(settings, process="flower")
if settings.redis_sentinels:
    # The one hook there is: Flower's Broker factory looks this class up in its module
    # by the URL's scheme (sentinel://) each time a page asks for queue lengths.
    flower_broker.RedisSentinel = _sentinel_queue_reader(settings)
