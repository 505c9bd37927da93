"""Connections to the stores: PostgreSQL, Redis and the object store (local or S3).

The URLs, the object store's location and keys, the database pool, and the timeouts and
attempts of the database and S3 clients; ``require_database_url`` and
``require_redis_url`` for the processes that cannot start without one. Whether the keys
are strong enough is ``production``'s question.

May import: ``shared.settings.common`` and pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from shared.settings.common import SettingsError, empty_is_unset


class StoreFields(BaseModel):
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

    # --- database pool (one engine per process) -------------------------------------
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=5, ge=0)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    db_pool_recycle_seconds: int = Field(default=1800, ge=-1)
    db_pool_pre_ping: bool = True

    # --- client timeouts (hostile or silent servers) --------------------------------
    # PostgreSQL: give up on a connection that does not answer (libpq would wait minutes
    # on a silent server) and cancel any statement running longer than this (0: never).
    database_connect_timeout_seconds: int = Field(default=5, ge=2)  # libpq's minimum is 2
    database_statement_timeout_ms: int = Field(default=30_000, ge=0)
    s3_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    s3_read_timeout_seconds: float = Field(default=30.0, gt=0)
    # boto3's own attempts per S3 call; the task-level retries come on top.
    s3_max_attempts: int = Field(default=3, ge=1)

    _stores_empty_is_unset = field_validator(
        "s3_access_key_id", "s3_secret_access_key", mode="before"
    )(empty_is_unset)

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
