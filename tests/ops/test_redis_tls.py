"""The pipeline on a Redis that speaks TLS only, its certificate checked against a CA.

A redis-server with ``--tls-port`` and ``--port 0`` (the machine's build links OpenSSL),
a CA and a server certificate made here with ``cryptography``; the receiver, a worker
and the ``kave`` CLI configured with ``rediss://`` and ``KAVE_REDIS_TLS_CA_FILE``. A
batch goes through to a stored email; a client that does not trust the CA is refused,
so the certificate really is checked.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from loadkit.redis_topology import TlsFiles, make_tls_files, tls_only_server
from shared.models import Email
from shared.redis_connect import redis_client
from shared.settings import Settings
from tests import services
from tests.kave.support import kave
from tests.services import child_env, derive_settings
from tests.webhooks import fixture_events, post_events, wait_for_deliveries


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TlsFiles, int]]:
    root = tmp_path_factory.mktemp("redis-tls")
    files = make_tls_files(root / "certificates")
    with tls_only_server(root, files) as node:
        yield files, node.port


def tls_settings(base: Settings, port: int, ca: Path | None) -> Settings:
    return derive_settings(
        base,
        redis_url=f"rediss://127.0.0.1:{port}/0",
        redis_tls_ca_file=ca,
        queue_name=f"kave-tls-{uuid.uuid4().hex[:8]}",
    )


def test_a_batch_goes_through_a_tls_only_redis(
    tls: tuple[TlsFiles, int],
    base_settings: Settings,
    engine: Engine,
    tmp_path: Path,
) -> None:
    files, port = tls
    settings = tls_settings(base_settings, port, files.ca)
    with (
        services.receiver_process(settings, tmp_path / "receiver.log") as receiver,
        services.worker_process(settings, tmp_path / "worker.log", concurrency=1),
    ):
        response = post_events(receiver, fixture_events("inbound.json"))
        assert response.status_code == 200, response.text
        delivery_id = response.json()["delivery_id"]
        wait_for_deliveries(engine, [delivery_id])
    with Session(engine) as session:
        stored = session.scalars(select(Email.delivery_id).where(Email.delivery_id == delivery_id))
        assert list(stored)
    # The CLI reads the same settings: reconciliation talks to Redis over TLS too.
    reconciled = kave(["reconcile", "--older-than", "1"], child_env(settings))
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr


def test_a_server_certificate_from_an_unknown_ca_is_refused(
    tls: tuple[TlsFiles, int], base_settings: Settings
) -> None:
    _, port = tls
    untrusting = tls_settings(base_settings, port, None)  # the system's trust store
    with pytest.raises(redis.ConnectionError) as refused:
        redis_client(untrusting, socket_connect_timeout=2).ping()
    assert isinstance(refused.value.__context__, ssl.SSLCertVerificationError) or (
        "certificate verify failed" in str(refused.value)
    )


def test_a_ca_file_needs_a_rediss_url(base_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="KAVE_REDIS_TLS_CA_FILE"):
        derive_settings(base_settings, redis_tls_ca_file=tmp_path / "ca.pem")
