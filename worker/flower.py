"""The instance ``celery flower`` loads: ``celery -A worker.flower flower``.

The same Celery app as ``worker.main``, with Kave's logging pipeline installed, so that
Flower's and tornado's lines are structured (JSON in production) and redacted like every
other process's, instead of tornado's plain text. Basic auth comes from Flower's own
``FLOWER_BASIC_AUTH=user:password``; ``docker-compose.yml``, the Kubernetes base and
``kave run`` always set it. In production Flower refuses to start without it: Flower
itself would serve every task's arguments and the workers' controls to anyone.
"""

import sys

from shared.logging import configure_logging
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


settings = _production_settings_or_exit()
app = create_celery_app(settings)
configure_logging(settings, process="flower")
