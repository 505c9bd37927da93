"""Redis beyond one node: replica-acknowledged acceptance, Sentinel and TLS.

``KAVE_REDIS_MIN_REPLICAS_ACK`` makes the receiver wait (Redis ``WAIT``) until that many
replicas hold a batch before it answers 200; ``KAVE_REDIS_SENTINELS`` and
``KAVE_REDIS_SENTINEL_MASTER`` make every process ask Sentinel where the primary is;
``KAVE_REDIS_TLS_CA_FILE`` is the CA a ``rediss://`` server's certificate is checked
against. How the clients are built from these is ``shared.redis_connect``'s job;
``production`` checks that they agree with each other and with ``KAVE_REDIS_URL``.

May import: ``shared.settings.common`` and pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.settings.common import empty_is_unset, split_csv


class RedisHaFields(BaseModel):
    # --- replica-acknowledged acceptance ---------------------------------------------
    # 0: a 200 once the primary holds the batch (its AOF covers a crash of Redis, not a
    # lost disk or host). N: also once N replicas acknowledged it, within the timeout
    # below; else 503 and Mandrill retries.
    redis_min_replicas_ack: int = Field(default=0, ge=0)
    redis_replicas_ack_timeout_seconds: float = Field(default=0.5, gt=0)

    # --- Sentinel ---------------------------------------------------------------------
    # host:port of each Sentinel, comma-separated. With them, KAVE_REDIS_URL still gives
    # the scheme (rediss:// for TLS), the password and the database; its host is unused.
    redis_sentinels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    redis_sentinel_master: str | None = None
    # The Sentinels' own password (their requirepass), when they have one.
    redis_sentinel_password: SecretStr | None = None

    # --- TLS --------------------------------------------------------------------------
    # The CA (PEM) that signed the server's certificate, for rediss:// URLs; unset, the
    # system's trust store is used. Certificates are always verified, host name included.
    redis_tls_ca_file: Path | None = None

    _redis_ha_csv = field_validator("redis_sentinels", mode="before")(split_csv)
    _redis_ha_empty_is_unset = field_validator(
        "redis_sentinel_master", "redis_sentinel_password", "redis_tls_ca_file", mode="before"
    )(empty_is_unset)

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            host, colon, port = address.rpartition(":")
            if not (host and colon and port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(
                    "KAVE_REDIS_SENTINELS is a comma-separated list of host:port "
                    "(sentinel-1:26379,sentinel-2:26379)"
                )
        return value

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The Sentinels as (host, port) pairs; empty without Sentinel."""
        pairs = []
        for address in self.redis_sentinels:
            host, _, port = address.rpartition(":")
            pairs.append((host.strip("[]"), int(port)))
        return pairs
