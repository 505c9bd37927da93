"""The instance ``celery flower`` loads: ``celery -A worker.flower flower``.

The same Celery app as ``worker.main``, with Kave's logging pipeline installed, so that
Flower's and tornado's lines are structured (JSON in production) and redacted like every
other process's, instead of tornado's plain text. Basic auth comes from Flower's own
``FLOWER_BASIC_AUTH=user:password``; ``docker-compose.yml`` and ``kave run`` always set it.
"""

from shared.logging import configure_logging
from shared.settings import get_settings
from worker.celery_app import create_celery_app

app = create_celery_app()
configure_logging(get_settings(), process="flower")
