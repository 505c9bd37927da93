"""The checks that span groups: consistency between groups, and what production demands.

``PROCESS_NEEDS`` says which variables each kind of process (``KAVE_PROCESS``) cannot
run without. ``check_consistency`` runs after every field is valid (the combined class
calls it from its model validator): limits that must agree across groups, and in
production the missing values and weak secrets of this process. ``require_process``
refuses an entry point that reads more than its ``KAVE_PROCESS`` demands. None of these
ever puts a secret's value in a message.

May import: ``shared.settings.common``, ``shared.settings.process``,
``shared.secret_strength``; the combined ``Settings`` for type checking only (it imports
this module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.secret_strength import (
    GENERATE_HINT,
    PASSWORD_MIN_LENGTH,
    SIGNING_KEY_MIN_LENGTH,
    is_placeholder,
    is_unix_socket_url,
    url_password,
    weakness,
)
from shared.settings.common import SettingsError
from shared.settings.process import ProcessName

if TYPE_CHECKING:
    from shared.settings.combined import Settings

# What each kind of process reads, as the variables production cannot run without:
# docker-compose.yml and deploy/kubernetes give each container only its own secrets
# (KAVE_PROCESS says which process it is), so a process must not demand the others'.
# "all" (KAVE_PROCESS unset) is one process that does everything: it demands them all.
PROCESS_NEEDS: dict[str, frozenset[str]] = {
    # Verifies and enqueues webhooks; large bodies go to the object store (claim-check).
    # It never opens the database: /readyz checks Redis only.
    "receiver": frozenset(
        {
            "KAVE_REDIS_URL",
            "KAVE_MANDRILL_WEBHOOK_URLS",
            "KAVE_MANDRILL_WEBHOOK_KEYS",
            "KAVE_OBJECT_STORE",
            "KAVE_METRICS_TOKEN",
        }
    ),
    "api": frozenset(
        {
            "KAVE_DATABASE_URL",
            "KAVE_REDIS_URL",
            "KAVE_OBJECT_STORE",
            "KAVE_JWT_SECRET_KEY",
            "KAVE_METRICS_TOKEN",
        }
    ),
    "worker": frozenset({"KAVE_DATABASE_URL", "KAVE_REDIS_URL", "KAVE_OBJECT_STORE"}),
    # Beat only sends the periodic tasks; the workers run them.
    "beat": frozenset({"KAVE_REDIS_URL"}),
    "flower": frozenset({"KAVE_REDIS_URL", "FLOWER_BASIC_AUTH"}),
    "migrate": frozenset({"KAVE_DATABASE_URL"}),
}
# Flower is never part of "all": it is its own container everywhere, with its own secret.
PROCESS_NEEDS["all"] = frozenset().union(
    *(needs for name, needs in PROCESS_NEEDS.items() if name != "flower")
)


def check_consistency(settings: Settings) -> None:
    """Raise ``ValueError`` (pydantic reports it) for settings that cannot work together."""
    if settings.visibility_timeout_seconds <= settings.task_time_limit_seconds:
        raise ValueError(
            "KAVE_VISIBILITY_TIMEOUT_SECONDS must be larger than "
            "KAVE_TASK_TIME_LIMIT_SECONDS, or a slow task is handed to a second worker"
        )
    if 0 < settings.retention_archive_days * 86400 < settings.retry_deadline_seconds:
        raise ValueError(
            "KAVE_RETENTION_ARCHIVE_DAYS must cover KAVE_RETRY_DEADLINE_SECONDS (or be 0): "
            "a delivery still being retried needs its archive"
        )
    if settings.object_store == "s3" and not settings.s3_bucket:
        raise ValueError("KAVE_OBJECT_STORE=s3 needs KAVE_S3_BUCKET")
    if settings.receiver_max_buffered_bytes < settings.max_body_bytes:
        raise ValueError(
            "KAVE_RECEIVER_MAX_BUFFERED_BYTES must be at least KAVE_MAX_BODY_BYTES, "
            "or a batch of the largest accepted size is always refused"
        )
    _check_redis(settings)
    if settings.env == "production":
        _check_production(settings)


def _check_redis(settings: Settings) -> None:
    if bool(settings.redis_sentinels) != bool(settings.redis_sentinel_master):
        raise ValueError(
            "KAVE_REDIS_SENTINELS and KAVE_REDIS_SENTINEL_MASTER go together: the "
            "Sentinels' addresses and the name they monitor the primary under"
        )
    if settings.redis_sentinels and settings.redis_url and settings.redis_url.startswith("unix:"):
        raise ValueError(
            "KAVE_REDIS_SENTINELS needs a redis:// or rediss:// KAVE_REDIS_URL (its "
            "password, database and scheme are used), not a unix:// socket"
        )
    if settings.redis_tls_ca_file is not None and not (settings.redis_url or "").startswith(
        "rediss://"
    ):
        raise ValueError(
            "KAVE_REDIS_TLS_CA_FILE is set but KAVE_REDIS_URL is not rediss://: "
            "use rediss:// for TLS, or unset the CA file"
        )
    if (
        settings.redis_min_replicas_ack
        and settings.redis_replicas_ack_timeout_seconds >= settings.enqueue_timeout_seconds
    ):
        raise ValueError(
            "KAVE_REDIS_REPLICAS_ACK_TIMEOUT_SECONDS must be below "
            "KAVE_ENQUEUE_TIMEOUT_SECONDS: the wait for replicas is part of making a "
            "batch durable in time"
        )


def _check_production(settings: Settings) -> None:
    needs = PROCESS_NEEDS[settings.process]
    missing = [
        name
        for name, value in (
            ("KAVE_DATABASE_URL", settings.database_url),
            ("KAVE_REDIS_URL", settings.redis_url),
            ("KAVE_MANDRILL_WEBHOOK_URLS", settings.mandrill_webhook_urls),
            ("KAVE_MANDRILL_WEBHOOK_KEYS", settings.mandrill_webhook_keys),
        )
        if name in needs and not value
    ]
    if missing:
        raise ValueError(
            "production settings missing: " + ", ".join(missing) + " (see .env.example)"
        )
    if settings.object_store == "local" and "KAVE_OBJECT_STORE" in needs:
        raise ValueError(
            "KAVE_OBJECT_STORE=local is for development; set KAVE_OBJECT_STORE=s3 "
            "and KAVE_S3_BUCKET in production"
        )
    problems = weak_secrets(settings, needs)
    if problems:
        raise ValueError(
            "production refuses missing or weak secrets: "
            + "; ".join(problems)
            + f". Set a random value for each ({GENERATE_HINT}; URL-safe, as some go "
            "into URLs) and restart"
        )


def require_process(settings: Settings, process: ProcessName) -> None:
    """See ``Settings.require_process``."""
    if settings.env != "production" or PROCESS_NEEDS[process] <= PROCESS_NEEDS[settings.process]:
        return
    missing = ", ".join(sorted(PROCESS_NEEDS[process] - PROCESS_NEEDS[settings.process]))
    raise SettingsError(
        f"this is the {process} process, but KAVE_PROCESS={settings.process} does not "
        f"require what it reads ({missing}); set KAVE_PROCESS={process}"
    )


def weak_secrets(settings: Settings, needs: frozenset[str]) -> list[str]:
    """One line per secret that production must not run with; never the value.
    A secret this process does not need is checked only when it is given."""
    problems: list[str] = []

    def check(name: str, value: str | None, min_length: int = PASSWORD_MIN_LENGTH) -> None:
        if value is None and name not in needs:
            return
        reason = weakness(value, min_length=min_length)
        if reason:
            problems.append(f"{name} {reason}")

    # Signs the API's tokens: whoever can guess it can mint them.
    key = settings.jwt_secret_key.get_secret_value() if settings.jwt_secret_key else None
    check("KAVE_JWT_SECRET_KEY", key, SIGNING_KEY_MIN_LENGTH)
    # The bearer token Prometheus sends to /metrics (the receiver's is on the public port).
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    check("KAVE_METRICS_TOKEN", token, SIGNING_KEY_MIN_LENGTH)
    # PostgreSQL's pg_hba.conf decides how a client authenticates: a URL without a
    # password may get it from PGPASSWORD or .pgpass, or use a client certificate or
    # peer authentication on a socket, none of which Kave can see. So only a password
    # written in the URL is checked.
    if settings.database_url and url_password(settings.database_url) is not None:
        check("KAVE_DATABASE_URL's password", url_password(settings.database_url))
    # Redis without requirepass lets anyone who reaches the port read and inject
    # tasks, so a TCP URL must carry a password. A Unix socket is guarded by its file
    # permissions instead: there the password is optional (but checked when given).
    if settings.redis_url:
        password = url_password(settings.redis_url)
        if password is None and not is_unix_socket_url(settings.redis_url):
            problems.append(
                "KAVE_REDIS_URL has no password (redis://:PASSWORD@host:6379/0, the "
                "server started with --requirepass PASSWORD; or a unix:// socket URL)"
            )
        elif password is not None:
            check("KAVE_REDIS_URL's password", password)
    # The Sentinels' own password, when they have one (checked only when given).
    sentinel = settings.redis_sentinel_password
    check("KAVE_REDIS_SENTINEL_PASSWORD", sentinel.get_secret_value() if sentinel else None)
    if settings.object_store == "s3":
        # Neither key set: boto3's default chain (instance role, AWS_* variables).
        secret = settings.s3_secret_access_key
        if (settings.s3_access_key_id is None) != (secret is None):
            problems.append(
                "KAVE_S3_ACCESS_KEY_ID and KAVE_S3_SECRET_ACCESS_KEY go together: set "
                "both, or neither to use the AWS default credentials (instance role)"
            )
        if settings.s3_access_key_id is not None and is_placeholder(settings.s3_access_key_id):
            problems.append("KAVE_S3_ACCESS_KEY_ID is a placeholder (a well-known value)")
        if secret is not None:
            check("KAVE_S3_SECRET_ACCESS_KEY", secret.get_secret_value())
    if settings.flower_basic_auth is None and "FLOWER_BASIC_AUTH" in needs:
        problems.append(
            "FLOWER_BASIC_AUTH is not set: Flower would be open; refusing to start in "
            "production without basic auth (user:password, a random password of at "
            "least 16 characters)"
        )
    if settings.flower_basic_auth is not None:
        entries = settings.flower_basic_auth.get_secret_value().split(",")
        for number, entry in enumerate(entries, start=1):
            user, colon, password = entry.strip().partition(":")
            if not (user and colon):
                problems.append("FLOWER_BASIC_AUTH is not user:password[,user:password]")
                break
            # By position, not user name: a swapped "password:user" would echo it.
            check(f"FLOWER_BASIC_AUTH's password (entry {number})", password)
    return problems
