"""The secrets and service addresses each Kave process reads: one table, both policies.

shared.settings.PROCESS_NEEDS says what each process demands in production; this is the
same table as the containers get it, in docker-compose.yml and in deploy/kubernetes:
its secrets and addresses, plus the S3 key pair for a process that uses the object
store. A process is given exactly these and no other: the public receiver never holds
the database URL or the JWT key. check_deploy_policy.py cannot import the project (it
runs in the deploy tools' venv), so the table lives here, once, and
tests/ops/test_process_settings.py keeps it in step with PROCESS_NEEDS.

Standard library only; imports nothing.
"""

from __future__ import annotations

import re

# A variable (or Secret key) whose name says it holds a secret.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEYS?$|AUTH", re.IGNORECASE)
# Both optional in Kubernetes: left out of the Secret, the pod's IAM role is used.
S3_KEYS = frozenset({"KAVE_S3_ACCESS_KEY_ID", "KAVE_S3_SECRET_ACCESS_KEY"})

PROCESS_SECRETS: dict[str, frozenset[str]] = {
    "receiver": frozenset(
        {"KAVE_REDIS_URL", *S3_KEYS, "KAVE_MANDRILL_WEBHOOK_KEYS", "KAVE_METRICS_TOKEN"}
    ),
    "api": frozenset(
        {
            "KAVE_DATABASE_URL",
            "KAVE_REDIS_URL",
            *S3_KEYS,
            "KAVE_JWT_SECRET_KEY",
            "KAVE_METRICS_TOKEN",
        }
    ),
    "worker": frozenset({"KAVE_DATABASE_URL", "KAVE_REDIS_URL", *S3_KEYS}),
    # The attachment text workers (same image, the text queue only): the same three.
    "text-worker": frozenset({"KAVE_DATABASE_URL", "KAVE_REDIS_URL", *S3_KEYS}),
    "beat": frozenset({"KAVE_REDIS_URL"}),
    "flower": frozenset({"KAVE_REDIS_URL", "FLOWER_BASIC_AUTH"}),
    "migrate": frozenset({"KAVE_DATABASE_URL"}),
}

# Components that run as another process (KAVE_PROCESS): the text workers are workers.
COMPONENT_PROCESS: dict[str, str] = {"text-worker": "worker"}
