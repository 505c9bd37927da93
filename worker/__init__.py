"""The Celery workers: the app (``celery_app``, ``main``), thin tasks on one base task
(``tasks``, ``task_base``), each process's context (``resources``), and four rooms:
``ingest`` (parse and store), ``handoff`` (hand stored emails to the platform),
``recovery`` (replay, reprocess, reconcile) and ``text`` (attachment text, on its own
queue). The rooms import ``shared`` and, as the
import contracts in pyproject.toml say, each other only through narrow seams; none of
them imports the tasks or the Celery app."""
