"""Every setting Kave reads, in one validated class.

Values come from environment variables prefixed ``KAVE_`` (and from a ``.env`` file in
the working directory). ``.env.example`` lists them all. In production the class refuses
to build when something the pipeline cannot run without is missing, so a misconfigured
process stops at start-up with a message instead of failing on the first webhook.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIB = 1024 * 1024

# Mandrill signs the validation POST it sends when a webhook is saved with this literal key.
MANDRILL_TEST_KEY = "test-webhook"


def _split_csv(value: object) -> object:
    """Read a comma-separated environment value as a list; leave lists alone."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class SettingsError(RuntimeError):
    """The configuration cannot work; the message says which variable to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KAVE_", env_file=".env", extra="ignore", frozen=True
    )

    env: Literal["development", "test", "production"] = "development"

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
    # Bodies above this go to the object store and only a pointer goes through Redis.
    claim_check_threshold_bytes: int = Field(default=1 * MIB, ge=0)
    # Mandrill gives up on a slow answer; we would rather say 503 and let it retry.
    enqueue_timeout_seconds: float = Field(default=1.5, gt=0)

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

    # --- logs and dashboard ---------------------------------------------------------
    log_level: str = "INFO"
    log_format: Literal["json", "console"] | None = None
    flower_basic_auth: SecretStr | None = None

    _split_urls = field_validator("mandrill_webhook_urls", mode="before")(_split_csv)
    _split_keys = field_validator("mandrill_webhook_keys", mode="before")(_split_csv)

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.visibility_timeout_seconds <= self.task_time_limit_seconds:
            raise ValueError(
                "KAVE_VISIBILITY_TIMEOUT_SECONDS must be larger than "
                "KAVE_TASK_TIME_LIMIT_SECONDS, or a slow task is handed to a second worker"
            )
        if self.object_store == "s3" and not self.s3_bucket:
            raise ValueError("KAVE_OBJECT_STORE=s3 needs KAVE_S3_BUCKET")
        if self.env == "production":
            missing = [
                name
                for name, value in (
                    ("KAVE_DATABASE_URL", self.database_url),
                    ("KAVE_REDIS_URL", self.redis_url),
                    ("KAVE_MANDRILL_WEBHOOK_URLS", self.mandrill_webhook_urls),
                    ("KAVE_MANDRILL_WEBHOOK_KEYS", self.mandrill_webhook_keys),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    "production settings missing: " + ", ".join(missing) + " (see .env.example)"
                )
            if self.object_store == "local":
                raise ValueError(
                    "KAVE_OBJECT_STORE=local is for development; set KAVE_OBJECT_STORE=s3 "
                    "and KAVE_S3_BUCKET in production"
                )
        return self

    @property
    def effective_log_format(self) -> Literal["json", "console"]:
        if self.log_format:
            return self.log_format
        return "console" if self.env == "development" else "json"

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
