"""Every setting Kave reads, in one validated class.

Values come from environment variables prefixed ``KAVE_`` (and from a ``.env`` file in
the working directory). ``.env.example`` lists them all. In production the class refuses
to build when something the pipeline cannot run without is missing, so a misconfigured
process stops at start-up with a message instead of failing on the first webhook.
"""

from __future__ import annotations

import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from pydantic import (
    AliasChoices,
    Field,
    IPvAnyNetwork,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.secret_strength import (
    GENERATE_HINT,
    PASSWORD_MIN_LENGTH,
    SIGNING_KEY_MIN_LENGTH,
    is_placeholder,
    is_unix_socket_url,
    url_password,
    weakness,
)

MIB = 1024 * 1024

# Mandrill signs the validation POST it sends when a webhook is saved with this literal key.
MANDRILL_TEST_KEY = "test-webhook"


def _split_csv(value: object) -> object:
    """Read a comma-separated environment value as a list; leave lists alone."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class RateLimit(NamedTuple):
    """``limit`` requests per ``seconds``, read from ``"N/second|minute|hour|day"``."""

    limit: int
    seconds: int


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate(value: str) -> RateLimit:
    match = _RATE.match(value)
    if not match or int(match.group(1)) < 1:
        raise ValueError(
            f"rate limit {value!r} is not N/second, N/minute, N/hour or N/day with N >= 1"
        )
    return RateLimit(int(match.group(1)), _PERIODS[match.group(2)])


# What each kind of process reads, as the variables production cannot run without:
# docker-compose.yml and deploy/kubernetes give each container only its own secrets
# (KAVE_PROCESS says which process it is), so a process must not demand the others'.
# "all" (KAVE_PROCESS unset) is one process that does everything: it demands them all.
ProcessName = Literal["all", "receiver", "api", "worker", "beat", "flower", "migrate"]
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


class SettingsError(RuntimeError):
    """The configuration cannot work; the message says which variable to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KAVE_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        # A validation error must not print the values it was given: they hold secrets.
        hide_input_in_errors=True,
    )

    env: Literal["development", "test", "production"] = "development"
    # Which process reads these settings (PROCESS_NEEDS): what production demands.
    process: ProcessName = "all"

    # --- services -------------------------------------------------------------------
    database_url: str | None = None
    redis_url: str | None = None

    # --- object store ---------------------------------------------------------------
    object_store: Literal["local", "s3"] = "local"
    local_store_dir: Path = Path("var/objects")
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None

    # --- webhook --------------------------------------------------------------------
    # Every URL exactly as registered in Mandrill (the signature covers it byte for byte).
    mandrill_webhook_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Every key that may sign a webhook: several during rotation, or when a tracking
    # webhook and an inbound route post to the same URL.
    mandrill_webhook_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # A 25 MB email arrives as a ~55 MB POST; common 1-2.5 MB defaults reject normal mail.
    max_body_bytes: int = Field(default=100 * MIB, gt=0)
    # Mandrill sends one form field (mandrill_events); a body with more pieces between
    # '&' than this is refused (400) before anything is built per field.
    max_form_fields: int = Field(default=8, ge=1)
    # Bodies above this go to the object store and only a pointer goes through Redis.
    claim_check_threshold_bytes: int = Field(default=1 * MIB, ge=0)
    # Mandrill gives up on a slow answer; we would rather say 503 and let it retry.
    enqueue_timeout_seconds: float = Field(default=1.5, gt=0)
    # Bytes all webhook bodies being received or handled may hold in one receiver
    # process; past it a POST is answered 503 with Retry-After (Mandrill retries). The
    # default holds two batches of the default KAVE_MAX_BODY_BYTES plus room for smaller
    # ones, and leaves the Kubernetes memory limit room for the process itself and for
    # the copies a large body briefly costs while it is stored. Never below
    # max_body_bytes, or a batch of the largest accepted size could never be accepted.
    receiver_max_buffered_bytes: int = Field(default=256 * MIB, gt=0)
    # Webhook POSTs one client address (see KAVE_TRUSTED_PROXIES) may have in flight in
    # one receiver process; past it 429 with Retry-After, before the body is read.
    # Generous: Mandrill may post several batches at once from one address, and behind a
    # proxy missing from KAVE_TRUSTED_PROXIES every client shares the proxy's address.
    receiver_max_requests_per_client: int = Field(default=64, ge=1)
    # A body must keep arriving: a POST whose next bytes take longer than the idle
    # timeout, or that has received fewer than min_rate x (elapsed - grace) bytes, is
    # answered 408 and its connection closed. A body of N bytes may thus take up to
    # grace + N / min_rate; the default rate is far below any working link's, so only a
    # client that trickles on purpose (holding a connection and its buffer) is dropped.
    receiver_body_idle_seconds: float = Field(default=30.0, gt=0)
    receiver_body_grace_seconds: float = Field(default=10.0, ge=0)
    receiver_body_min_rate_bytes: int = Field(default=64 * 1024, gt=0)

    # --- database pool (one engine per process) -------------------------------------
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=5, ge=0)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    db_pool_recycle_seconds: int = Field(default=1800, ge=-1)
    db_pool_pre_ping: bool = True

    # --- queue and workers ----------------------------------------------------------
    queue_name: str = "kave"
    # A message a worker took but never acknowledged comes back after this long.
    # Must exceed task_time_limit_seconds so that no live task is ever handed out twice.
    visibility_timeout_seconds: int = Field(default=300, gt=0)
    task_time_limit_seconds: int = Field(default=240, gt=0)
    worker_concurrency: int = Field(default=2, ge=1)
    # How often a worker looks for messages of dead workers whose visibility timeout
    # passed; a lost task is back in the queue within visibility timeout + this.
    unacked_restore_interval_seconds: int = Field(default=10, ge=1)

    # --- reliability ----------------------------------------------------------------
    # A delivery that keeps failing on a service outage is retried (exponential backoff
    # with jitter, at most retry_backoff_max_seconds apart) until this long after it was
    # received, then dead-lettered so that it can be replayed once the outage is over.
    retry_deadline_seconds: int = Field(default=6 * 3600, gt=0)
    retry_backoff_max_seconds: int = Field(default=60, ge=1)
    # Errors of an unknown kind are retried this many times before they dead-letter.
    unknown_error_retries: int = Field(default=3, ge=0)
    # An event whose processing kills its worker (crash, out of memory, time limit)
    # this many times is dead-lettered instead of being retried forever.
    max_worker_losses: int = Field(default=3, ge=1)
    # Deliveries still unfinished this long after their last attempt are re-enqueued by
    # `kave reconcile` (Celery beat runs it every reconcile_interval_seconds).
    reconcile_after_seconds: int = Field(default=900, ge=1)
    reconcile_interval_seconds: int = Field(default=300, ge=1)
    s3_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    s3_read_timeout_seconds: float = Field(default=30.0, gt=0)
    # boto3's own attempts per S3 call; the task-level retries come on top.
    s3_max_attempts: int = Field(default=3, ge=1)

    # --- hostile input and timeouts (worker hardening) ---------------------------------
    # PostgreSQL: give up on a connection that does not answer (libpq would wait minutes
    # on a silent server) and cancel any statement running longer than this (0: never).
    database_connect_timeout_seconds: int = Field(default=5, ge=2)  # libpq's minimum is 2
    database_statement_timeout_ms: int = Field(default=30_000, ge=0)
    # Caps per inbound email, far above real mail (see RELIABILITY.md, "Hostile input"):
    # an email over one is dead-lettered before anything of it is uploaded or parsed in
    # full. MIME parts counts every entity (containers, leaves, attached messages);
    # nesting is how many multiparts and attached messages enclose the deepest part;
    # header bytes are the header sections of the message and all its parts together.
    email_max_mime_parts: int = Field(default=1000, ge=1)
    email_max_nesting_depth: int = Field(default=20, ge=1, le=100)
    email_max_header_bytes: int = Field(default=1 * MIB, ge=1024)
    email_max_attachments: int = Field(default=500, ge=1)
    # Objects of one email (raw message, attachments) uploaded at once to S3 (the local
    # store writes them one after another); botocore's connection pool holds 10
    # connections, so more would only wait for one.
    upload_concurrency: int = Field(default=8, ge=1, le=10)
    # --- retention (kave purge, and the beat task every purge_interval_seconds) ------
    # Days to keep each kind, counted from when it was received; 0 keeps it forever.
    # The raw webhook archive is what reprocessing and dead-letter replays read: keep it
    # at least as long as the retry deadline (checked below).
    retention_archive_days: int = Field(default=30, ge=0)
    retention_raw_messages_days: int = Field(default=0, ge=0)
    retention_attachments_days: int = Field(default=0, ge=0)
    retention_emails_days: int = Field(default=0, ge=0)
    retention_events_days: int = Field(default=0, ge=0)
    retention_deliveries_days: int = Field(default=0, ge=0)
    # Replayed or discarded dead letters only; open ones wait for an operator.
    retention_dead_letters_days: int = Field(default=0, ge=0)
    purge_interval_seconds: int = Field(default=3600, ge=60)
    # Rows per transaction of kave purge (each batch commits with its object to-do list).
    purge_batch_size: int = Field(default=500, ge=1)
    # An object written more recently than this is never deleted as unreferenced: the
    # receiver writes a large body before its task is queued and workers write objects
    # before the rows naming them, so a young object may be about to be referenced.
    # Keep it above the retry deadline (a queued claim-checked body waits that long).
    orphan_grace_seconds: int = Field(default=86400, ge=0)

    # --- logs and dashboard ---------------------------------------------------------
    log_level: str = "INFO"
    log_format: Literal["json", "console"] | None = None
    # user:password[,user:password] for Flower. Flower itself reads FLOWER_BASIC_AUTH, so
    # that name is read first: production then checks the password Flower really uses.
    flower_basic_auth: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "FLOWER_BASIC_AUTH", "KAVE_FLOWER_BASIC_AUTH", "flower_basic_auth"
        ),
    )

    # --- observability --------------------------------------------------------------
    # Each worker node (the main process of `celery worker`) serves the Prometheus
    # metrics of all its pool processes on this port; 0 turns it off. Bind 0.0.0.0 in a
    # container so that Prometheus can reach it.
    worker_metrics_port: int = Field(default=9808, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # Where the pool processes of a worker node write their metrics (prometheus_client
    # multiprocess mode). Empty: a fresh temporary directory per node. Never share one
    # directory between nodes; it is emptied when the node starts.
    worker_metrics_dir: Path | None = None
    # Time the API's /metrics gives its Redis read and its PostgreSQL queries (the pipeline
    # collector: backlog, alerting and audit gauges).
    metrics_query_timeout_seconds: float = Field(default=2.0, gt=0)
    # How long inbound mail may be silent before the KaveNoInboundMail alert fires
    # (published as kave_inbound_silence_threshold_seconds; deploy/prometheus reads it).
    inbound_silence_alert_seconds: float = Field(default=6 * 3600.0, gt=0)
    # Bearer token /metrics of the receiver and the API requires (Prometheus: `authorization:
    # credentials`). Required in production: at least 32 characters, not a placeholder.
    # Unset in development and test: /metrics is open.
    metrics_token: SecretStr | None = None

    # --- hand-off to the platform (README "Handing emails to your platform") ----------
    # The ordered routes (YAML or JSON; worker/handoff/routes.py). Unset: no hand-off.
    handoff_routes_file: Path | None = None
    # Publishing attempts per dispatch before it becomes a dead letter (kind "dispatch").
    handoff_max_attempts: int = Field(default=8, ge=1)
    handoff_backoff_max_seconds: int = Field(default=300, ge=1)
    # How often Celery beat sweeps the outbox for pending dispatches (crash recovery).
    handoff_sweep_interval_seconds: float = Field(default=10.0, gt=0)

    # --- management API -------------------------------------------------------------
    # Signs the API's access tokens (HS256). Required in production: at least 32
    # characters and not a placeholder. In development and test, when unset, every process
    # makes up its own random key, so tokens live only as long as that process.
    jwt_secret_key: SecretStr | None = None
    access_token_lifetime_seconds: int = Field(default=3600, gt=0, le=7 * 86400)
    # Browser origins allowed to call the API (CORS), comma-separated; empty: none.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Proxies (addresses or networks, comma-separated) whose X-Forwarded-For is believed
    # when they are the direct peer. Empty: the peer address is the client, always.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)
    # "N/second|minute|hour|day", kept in Redis so every replica shares them: per client on
    # POST /api/v1/auth/token, per user on the rest of the API, and per client on refused
    # webhook POSTs (401, 400, 413, 415; correctly signed webhooks are never limited).
    rate_limit_token: str = "10/minute"  # noqa: S105 - a rate, not a secret
    # Failed logins per account name (any address; unknown names too): then 429 for that
    # account, even for the right password, until failures leave the window.
    rate_limit_login_failures: str = "5/minute"
    rate_limit_api: str = "600/minute"
    rate_limit_webhook_signature_failures: str = "30/minute"

    _ephemeral_jwt_key: str = PrivateAttr(default_factory=lambda: secrets.token_urlsafe(48))

    _split_urls = field_validator("mandrill_webhook_urls", mode="before")(_split_csv)
    _split_keys = field_validator("mandrill_webhook_keys", mode="before")(_split_csv)
    _split_proxies = field_validator("trusted_proxies", mode="before")(_split_csv)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # Browsers send Origin without a trailing slash; "https://app.example/" never matches.
        value = _split_csv(value)
        if isinstance(value, list):
            return [o.rstrip("/") if isinstance(o, str) and o != "*" else o for o in value]
        return value

    @field_validator(
        "jwt_secret_key",
        "metrics_token",
        "flower_basic_auth",
        "s3_access_key_id",
        "s3_secret_access_key",
        "worker_metrics_dir",
        "handoff_routes_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # KAVE_X= (as in .env.example) means unset: not an empty secret, and not the
        # working directory for a path.
        return None if value == "" else value

    @field_validator(
        "rate_limit_token",
        "rate_limit_login_failures",
        "rate_limit_api",
        "rate_limit_webhook_signature_failures",
    )
    @classmethod
    def _check_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.visibility_timeout_seconds <= self.task_time_limit_seconds:
            raise ValueError(
                "KAVE_VISIBILITY_TIMEOUT_SECONDS must be larger than "
                "KAVE_TASK_TIME_LIMIT_SECONDS, or a slow task is handed to a second worker"
            )
        if 0 < self.retention_archive_days * 86400 < self.retry_deadline_seconds:
            raise ValueError(
                "KAVE_RETENTION_ARCHIVE_DAYS must cover KAVE_RETRY_DEADLINE_SECONDS (or be 0): "
                "a delivery still being retried needs its archive"
            )
        if self.object_store == "s3" and not self.s3_bucket:
            raise ValueError("KAVE_OBJECT_STORE=s3 needs KAVE_S3_BUCKET")
        if self.receiver_max_buffered_bytes < self.max_body_bytes:
            raise ValueError(
                "KAVE_RECEIVER_MAX_BUFFERED_BYTES must be at least KAVE_MAX_BODY_BYTES, "
                "or a batch of the largest accepted size is always refused"
            )
        if self.env == "production":
            needs = PROCESS_NEEDS[self.process]
            missing = [
                name
                for name, value in (
                    ("KAVE_DATABASE_URL", self.database_url),
                    ("KAVE_REDIS_URL", self.redis_url),
                    ("KAVE_MANDRILL_WEBHOOK_URLS", self.mandrill_webhook_urls),
                    ("KAVE_MANDRILL_WEBHOOK_KEYS", self.mandrill_webhook_keys),
                )
                if name in needs and not value
            ]
            if missing:
                raise ValueError(
                    "production settings missing: " + ", ".join(missing) + " (see .env.example)"
                )
            if self.object_store == "local" and "KAVE_OBJECT_STORE" in needs:
                raise ValueError(
                    "KAVE_OBJECT_STORE=local is for development; set KAVE_OBJECT_STORE=s3 "
                    "and KAVE_S3_BUCKET in production"
                )
            problems = self._weak_secrets(needs)
            if problems:
                raise ValueError(
                    "production refuses missing or weak secrets: "
                    + "; ".join(problems)
                    + f". Set a random value for each ({GENERATE_HINT}; URL-safe, as some go "
                    "into URLs) and restart"
                )
        return self

    def require_process(self, process: ProcessName) -> None:
        """Refuse to run as ``process`` in production when KAVE_PROCESS names a process
        that demands less than this one reads: the production checks trust KAVE_PROCESS,
        so each entry point states what it is (a receiver told it is ``beat`` would
        otherwise start without its metrics token)."""
        if self.env != "production" or PROCESS_NEEDS[process] <= PROCESS_NEEDS[self.process]:
            return
        missing = ", ".join(sorted(PROCESS_NEEDS[process] - PROCESS_NEEDS[self.process]))
        raise SettingsError(
            f"this is the {process} process, but KAVE_PROCESS={self.process} does not "
            f"require what it reads ({missing}); set KAVE_PROCESS={process}"
        )

    def _weak_secrets(self, needs: frozenset[str]) -> list[str]:
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
        key = self.jwt_secret_key.get_secret_value() if self.jwt_secret_key else None
        check("KAVE_JWT_SECRET_KEY", key, SIGNING_KEY_MIN_LENGTH)
        # The bearer token Prometheus sends to /metrics (the receiver's is on the public port).
        token = self.metrics_token.get_secret_value() if self.metrics_token else None
        check("KAVE_METRICS_TOKEN", token, SIGNING_KEY_MIN_LENGTH)
        # PostgreSQL's pg_hba.conf decides how a client authenticates: a URL without a
        # password may get it from PGPASSWORD or .pgpass, or use a client certificate or
        # peer authentication on a socket, none of which Kave can see. So only a password
        # written in the URL is checked.
        if self.database_url and url_password(self.database_url) is not None:
            check("KAVE_DATABASE_URL's password", url_password(self.database_url))
        # Redis without requirepass lets anyone who reaches the port read and inject
        # tasks, so a TCP URL must carry a password. A Unix socket is guarded by its file
        # permissions instead: there the password is optional (but checked when given).
        if self.redis_url:
            password = url_password(self.redis_url)
            if password is None and not is_unix_socket_url(self.redis_url):
                problems.append(
                    "KAVE_REDIS_URL has no password (redis://:PASSWORD@host:6379/0, the "
                    "server started with --requirepass PASSWORD; or a unix:// socket URL)"
                )
            elif password is not None:
                check("KAVE_REDIS_URL's password", password)
        if self.object_store == "s3":
            # Neither key set: boto3's default chain (instance role, AWS_* variables).
            secret = self.s3_secret_access_key
            if (self.s3_access_key_id is None) != (secret is None):
                problems.append(
                    "KAVE_S3_ACCESS_KEY_ID and KAVE_S3_SECRET_ACCESS_KEY go together: set "
                    "both, or neither to use the AWS default credentials (instance role)"
                )
            if self.s3_access_key_id is not None and is_placeholder(self.s3_access_key_id):
                problems.append("KAVE_S3_ACCESS_KEY_ID is a placeholder (a well-known value)")
            if secret is not None:
                check("KAVE_S3_SECRET_ACCESS_KEY", secret.get_secret_value())
        if self.flower_basic_auth is None and "FLOWER_BASIC_AUTH" in needs:
            problems.append(
                "FLOWER_BASIC_AUTH is not set: Flower would be open; refusing to start in "
                "production without basic auth (user:password, a random password of at "
                "least 16 characters)"
            )
        if self.flower_basic_auth is not None:
            entries = self.flower_basic_auth.get_secret_value().split(",")
            for number, entry in enumerate(entries, start=1):
                user, colon, password = entry.strip().partition(":")
                if not (user and colon):
                    problems.append("FLOWER_BASIC_AUTH is not user:password[,user:password]")
                    break
                # By position, not user name: a swapped "password:user" would echo it.
                check(f"FLOWER_BASIC_AUTH's password (entry {number})", password)
        return problems

    def jwt_key(self) -> str:
        """The key that signs and verifies API tokens (see ``jwt_secret_key``)."""
        if self.jwt_secret_key is not None:
            return self.jwt_secret_key.get_secret_value()
        return self._ephemeral_jwt_key

    @property
    def effective_log_format(self) -> Literal["json", "console"]:
        if self.log_format:
            return self.log_format
        return "console" if self.env == "development" else "json"

    def as_environment(self) -> dict[str, str]:
        """These settings as the ``KAVE_*`` variables a child process would read back
        (secrets revealed: for handing to a process, never for logging)."""

        def text(value: object) -> str:
            if isinstance(value, SecretStr):
                return value.get_secret_value()
            if isinstance(value, list):
                return ",".join(text(item) for item in value)
            return str(value)

        return {
            f"KAVE_{name.upper()}": text(value)
            for name, value in self.model_dump().items()
            if value is not None
        }

    def webhook_keys(self) -> list[str]:
        return [key.get_secret_value() for key in self.mandrill_webhook_keys]

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SettingsError(
                "KAVE_DATABASE_URL is not set: point it at PostgreSQL "
                "(postgresql+psycopg://user:pass@host/db), or use `kave run` for embedded services"
            )
        return self.database_url

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise SettingsError(
                "KAVE_REDIS_URL is not set: point it at Redis (redis://host:6379/0), "
                "or use `kave run` for embedded services"
            )
        return self.redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; a readable error instead of a traceback."""
    try:
        return Settings()
    except ValueError as exc:
        raise SettingsError(f"invalid configuration: {exc}") from exc
