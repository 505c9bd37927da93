"""The dev stack: one way to run Kave's services, for ``kave run``, the tests and the bench.

- :mod:`~kave.devstack.commands`: the command line of every process (uvicorn, celery
  worker, Flower, moto).
- :mod:`~kave.devstack.processes`: starting them, waiting until they serve, stopping them.
- :mod:`~kave.devstack.environment`: the environment a child gets (its settings, exactly).
- :mod:`~kave.devstack.embedded`: PostgreSQL and Redis from wheels.
- :mod:`~kave.devstack.databases`: the machine's or an embedded PostgreSQL, scratch databases.
- :mod:`~kave.devstack.s3`: an S3 server (moto).
- :mod:`~kave.devstack.supervisor`: ``kave run``'s restarts with backoff.
- :mod:`~kave.devstack.var`: dev secrets and the run file under ``./var``.

The webhook path and the signed-request builder live in ``shared`` (``shared.webhook``,
``shared.mandrill_signature.signed_form``), where the receiver can use them too.
"""

from kave.devstack.commands import celery_worker_command, flower_command, uvicorn_command
from kave.devstack.databases import postgres_server, scratch_database
from kave.devstack.embedded import EmbeddedPostgres, EmbeddedRedis
from kave.devstack.environment import child_env, derive_settings
from kave.devstack.processes import (
    DevStackError,
    free_port,
    running,
    start_celery_worker,
    stop_process,
    uvicorn_server,
    wait_for_http,
    wait_until,
)
from kave.devstack.s3 import MotoServer, s3_server

__all__ = [
    "DevStackError",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "MotoServer",
    "celery_worker_command",
    "child_env",
    "derive_settings",
    "flower_command",
    "free_port",
    "postgres_server",
    "running",
    "s3_server",
    "scratch_database",
    "start_celery_worker",
    "stop_process",
    "uvicorn_command",
    "uvicorn_server",
    "wait_for_http",
    "wait_until",
]
