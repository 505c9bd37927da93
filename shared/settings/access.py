"""Who may call, and how often: the management API's token key and lifetime, CORS, the
proxies whose X-Forwarded-For is believed, and the rate limits (``RateLimit``,
``parse_rate``) of the API's logins and calls and of refused webhook POSTs.

The trusted proxies and the webhook limit are read by the receiver as well as the API.
Whether the token key is strong enough is ``production``'s question.

May import: ``shared.settings.common`` and pydantic.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, NamedTuple

from pydantic import BaseModel, Field, IPvAnyNetwork, PrivateAttr, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.settings.common import empty_is_unset, split_csv


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


class AccessFields(BaseModel):
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
    # The live feed (GET /api/v1/stream): how often it looks for new emails, how often an
    # idle stream sends a heartbeat, and how many streams one user or key may hold open.
    stream_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    streams_per_caller: int = Field(default=3, ge=1, le=100)

    _ephemeral_jwt_key: str = PrivateAttr(default_factory=lambda: secrets.token_urlsafe(48))

    _access_empty_is_unset = field_validator("jwt_secret_key", mode="before")(empty_is_unset)
    _split_proxies = field_validator("trusted_proxies", mode="before")(split_csv)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # Browsers send Origin without a trailing slash; "https://app.example/" never matches.
        value = split_csv(value)
        if isinstance(value, list):
            return [o.rstrip("/") if isinstance(o, str) and o != "*" else o for o in value]
        return value

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

    def jwt_key(self) -> str:
        """The key that signs and verifies API tokens (see ``jwt_secret_key``)."""
        if self.jwt_secret_key is not None:
            return self.jwt_secret_key.get_secret_value()
        return self._ephemeral_jwt_key
