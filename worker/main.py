"""The instance the ``celery`` command loads: ``celery -A worker.main worker``."""

from worker.celery_app import create_celery_app

app = create_celery_app()
