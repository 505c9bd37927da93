"""Every Redis client of every process, built from the settings in one place.

Three shapes of deployment, one set of calls:

- one server: ``KAVE_REDIS_URL`` (``redis://``, ``rediss://`` or ``unix://``);
- TLS: a ``rediss://`` URL; the server's certificate and host name are always verified,
  against ``KAVE_REDIS_TLS_CA_FILE`` when set (a private CA, as managed services and
  ``redis-server --tls-port`` setups use), else the system's trust store;
- Sentinel: ``KAVE_REDIS_SENTINELS`` and ``KAVE_REDIS_SENTINEL_MASTER``. The clients ask
  the Sentinels where the primary is, on every new connection, so after a failover they
  reconnect to the promoted replica. ``KAVE_REDIS_URL`` then still says the scheme (TLS
  for the primary and the Sentinels alike), the password and the database; its host is
  not used.

:func:`redis_client` and :func:`async_redis_client` are for Kave's own reads and writes
(the receiver's bodies and ledger, rate limits, the workers' markers, the API's gauges,
the CLI); :func:`celery_broker` is the same thing said in Celery's and kombu's words
(``sentinel://`` URLs, ``master_name``, ``broker_use_ssl``), for the broker of every
Celery process: receiver and API (producers), workers, beat and Flower.

May import: ``shared.settings`` and redis-py.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff
from redis.connection import parse_url

from shared.settings import Settings


def tls_options(settings: Settings) -> dict[str, Any]:
    """redis-py's keyword arguments for a verified TLS connection; {} without TLS."""
    if not settings.require_redis_url().startswith("rediss://"):
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if settings.redis_tls_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
    return options


def _primary_options(settings: Settings) -> dict[str, Any]:
    """What the primary's connections take from KAVE_REDIS_URL under Sentinel."""
    parsed = parse_url(settings.require_redis_url())  # type: ignore[no-untyped-call]
    options = {name: parsed[name] for name in ("username", "password", "db") if name in parsed}
    tls = tls_options(settings)
    if tls:
        options.update(ssl=True, **tls)
    return options


def _sentinel_options(
    settings: Settings, socket_options: dict[str, Any], retry: object
) -> dict[str, Any]:
    """The connections to the Sentinels themselves: their password, the same TLS, and
    ``retry`` (no retry, of the client's kind): a Sentinel that does not answer is left
    for the next one at once. redis-py's default retries, with backoff from a second up,
    cost every new connection of every client 3 to 5 s while one Sentinel was down."""
    options = {name: value for name, value in socket_options.items() if name.startswith("socket_")}
    options["retry"] = retry
    if settings.redis_sentinel_password is not None:
        options["password"] = settings.redis_sentinel_password.get_secret_value()
    tls = tls_options(settings)
    if tls:
        options.update(ssl=True, **tls)
    return options


def redis_client(settings: Settings, **options: Any) -> redis.Redis:
    """A blocking client of the primary; ``options`` are redis-py's (timeouts, retry)."""
    if settings.redis_sentinels:
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            settings.sentinel_addresses(),
            sentinel_kwargs=_sentinel_options(settings, options, redis.retry.Retry(NoBackoff(), 0)),
            **_primary_options(settings),
        )
        client: redis.Redis = sentinel.master_for(str(settings.redis_sentinel_master), **options)  # type: ignore[no-untyped-call]
        return client
    return redis.Redis.from_url(settings.require_redis_url(), **tls_options(settings), **options)


def async_redis_client(settings: Settings, **options: Any) -> redis.asyncio.Redis:
    """An asyncio client of the primary; ``options`` are redis-py's (timeouts, retry)."""
    if settings.redis_sentinels:
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            settings.sentinel_addresses(),
            sentinel_kwargs=_sentinel_options(
                settings, options, redis.asyncio.retry.Retry(NoBackoff(), 0)
            ),
            **_primary_options(settings),
        )
        client: redis.asyncio.Redis = sentinel.master_for(
            str(settings.redis_sentinel_master), **options
        )
        return client
    return redis.asyncio.Redis.from_url(
        settings.require_redis_url(), **tls_options(settings), **options
    )


def celery_broker(settings: Settings, socket_timeout: float) -> dict[str, Any]:
    """Celery's broker settings: ``broker_url``, ``broker_use_ssl`` when TLS, and the
    transport options Sentinel needs (merged into the others by ``shared.queue``)."""
    url = settings.require_redis_url()
    tls = tls_options(settings)
    config: dict[str, Any] = {"broker_url": url, "broker_transport_options": {}}
    if tls:
        # kombu hands these to redis-py's SSL connection (Sentinel's too); Celery wants
        # ssl_cert_reqs spelled as the ssl module's constant.
        config["broker_use_ssl"] = {**tls, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    if settings.redis_sentinels:
        # kombu reads the primary's password and database from each sentinel:// URL.
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        credentials = f"{userinfo}@" if userinfo else ""
        database = parts.path or "/0"
        config["broker_url"] = ";".join(
            f"sentinel://{credentials}{_url_host(host)}:{port}{database}"
            for host, port in settings.sentinel_addresses()
        )
        config["broker_transport_options"] = {
            "master_name": settings.redis_sentinel_master,
            "sentinel_kwargs": _sentinel_options(
                settings,
                {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout},
                redis.retry.Retry(NoBackoff(), 0),
            ),
        }
    return config


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
