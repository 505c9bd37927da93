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

NO_AUTH_MESSAGE = (
    "flower: refusing to start in production without basic auth. Set "
    "FLOWER_BASIC_AUTH=user:password (a random password of at least 16 characters: "
    "python -c 'import secrets; print(secrets.token_urlsafe(32))') and start it again."
)


def _production_settings_or_exit() -> Settings:
    """The settings, or exit with a message (not a traceback) when Flower must not run."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        sys.exit(f"flower: {exc}")
    # Settings already refuses a weak FLOWER_BASIC_AUTH whenever one is given; the
    # missing one is refused here, whatever KAVE_PROCESS says.
    if settings.env == "production" and settings.flower_basic_auth is None:
        sys.exit(NO_AUTH_MESSAGE)
    return settings


settings = _production_settings_or_exit()
app = create_celery_app(settings)
configure_logging(settings, process="flower")
