"""The Celery workers: the app (``celery_app``, ``main``), thin tasks on one base task
(``tasks``, ``task_base``), each process's context (``resources``), and three rooms:
``ingest`` (parse and store), ``handoff`` (hand stored emails to the platform) and
``recovery`` (replay, reprocess, reconcile). The rooms import ``shared`` and, as the
import contracts in pyproject.toml say, each other only through narrow seams; none of
them imports the tasks or the Celery app."""
