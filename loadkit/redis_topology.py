"""Real Redis topologies for the tests and the bench: a primary with replicas, Sentinels,
a replica cut off from its primary for a while, TLS.

Every node is the machine's ``redis-server`` (the Debian build: it links OpenSSL, so
``--tls-port`` works, and ``--sentinel`` runs a Sentinel), started in a directory of its
own on a free port, so that a test can SIGKILL the primary and watch the Sentinels
promote the replica. ``Topology.partition`` cuts the replica off its primary for a while
(what a network partition or a replica's restart does): the primary goes on accepting
writes the replica does not have. The certificates of a TLS server are made here with
``cryptography``: a CA, and a server certificate it signs for 127.0.0.1 and localhost.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MASTER_NAME = "kave-primary"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM (redis-server exits cleanly on it), SIGKILL after ``timeout``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    return found


@dataclass
class RedisNode:
    """One redis-server (or Sentinel) process; ``start`` again after ``kill`` restarts
    it on the same port and directory, as a supervisor would."""

    name: str
    directory: Path
    port: int
    args: list[str]
    sentinel: bool = False
    process: subprocess.Popen[bytes] | None = None
    client_options: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "log").open("ab")
        command = [redis_server_binary(), *self.args]
        if self.sentinel:
            command.append("--sentinel")
        self.process = subprocess.Popen(  # noqa: S603 - the machine's redis-server, our own arguments
            command, cwd=self.directory, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        client = redis.Redis(
            "127.0.0.1", self.port, socket_connect_timeout=0.5, **self.client_options
        )
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} never answered: {self.log_tail()}") from None
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write to disk, connections cut."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis("127.0.0.1", self.port, **self.client_options)

    def log_tail(self, lines: int = 20) -> str:
        path = self.directory / "log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def data_node_args(directory: Path, port: int, *, replica_of: int | None = None) -> list[str]:
    """A data node as production runs one (AOF, noeviction), quick to sync a replica."""
    args = [
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(directory),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--maxmemory-policy", "noeviction",
        # A replica's full sync starts at once instead of after the 5 s default, which
        # waits for more replicas to share one transfer.
        "--repl-diskless-sync-delay", "0",
    ]  # fmt: skip
    if replica_of is not None:
        args += ["--replicaof", "127.0.0.1", str(replica_of)]
    return args


@dataclass
class Topology:
    """One primary, its replicas and the Sentinels that watch them."""

    primary: RedisNode
    replicas: list[RedisNode]
    sentinels: list[RedisNode]

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.sentinels]

    def wait_for_replicas(self, count: int, timeout: float = 15) -> None:
        """Until the current primary has ``count`` replicas online and in sync."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = self.current_primary().client().info("replication")
                online = sum(
                    1
                    for key, value in info.items()
                    if key.startswith("slave") and isinstance(value, dict)
                    if value.get("state") == "online"
                )
                if online >= count:
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} replicas online")
            time.sleep(0.1)

    def sentinel_primary_port(self) -> int | None:
        """The primary's port as the first answering Sentinel names it."""
        for node in self.sentinels:
            try:
                answer = node.client().execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME
                )
            except redis.RedisError:
                continue
            if answer:
                return int(answer[1])
        return None

    def partition(self, replica: RedisNode) -> None:
        """Cut ``replica`` off its primary: its replication link is dropped, and it cannot
        sync again (it now sends the primary a password the primary does not have) until
        :meth:`heal`. The Sentinels still reach both, as across a partial partition."""
        replica.client().config_set("masterauth", "partitioned-from-the-primary")
        self.current_primary().client().client_kill_filter(_type="replica")

    def heal(self, replica: RedisNode) -> None:
        replica.client().config_set("masterauth", "")

    def current_primary(self) -> RedisNode:
        port = self.sentinel_primary_port() if self.sentinels else self.primary.port
        for node in (self.primary, *self.replicas):
            if node.port == port:
                return node
        raise LookupError(f"no node on port {port}")


@contextmanager
def sentinel_topology(
    root: Path,
    *,
    replicas: int = 1,
    sentinels: int = 3,
    down_after_ms: int = 1000,
) -> Iterator[Topology]:
    """A primary, ``replicas`` replicas and ``sentinels`` Sentinels (quorum: a majority),
    each on a free port under ``root``; all stopped on exit."""
    with ExitStack() as exits:
        primary_port = free_port()
        primary_dir = root / "primary"
        primary = RedisNode(
            "primary", primary_dir, primary_port, data_node_args(primary_dir, primary_port)
        )
        nodes = [primary]
        for number in range(replicas):
            port = free_port()
            directory = root / f"replica-{number}"
            nodes.append(
                RedisNode(
                    f"replica-{number}",
                    directory,
                    port,
                    data_node_args(directory, port, replica_of=primary_port),
                )
            )
        for node in nodes:
            node.start()
            exits.callback(node.stop)
        watchers = []
        quorum = sentinels // 2 + 1
        for number in range(sentinels):
            port = free_port()
            directory = root / f"sentinel-{number}"
            directory.mkdir(parents=True)
            config = directory / "sentinel.conf"
            # Sentinel rewrites its file as it learns the topology, so each has its own.
            config.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {directory}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {quorum}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
                f"sentinel failover-timeout {MASTER_NAME} {max(3 * down_after_ms, 2000)}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            watcher = RedisNode(f"sentinel-{number}", directory, port, [str(config)], sentinel=True)
            watcher.start()
            exits.callback(watcher.stop)
            watchers.append(watcher)
        topology = Topology(primary, nodes[1:], watchers)
        topology.wait_for_replicas(replicas)
        yield topology


# --- TLS --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    certificate: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA and a server certificate it signed, valid for 127.0.0.1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kave test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@contextmanager
def tls_only_server(root: Path, files: TlsFiles) -> Iterator[RedisNode]:
    """A redis-server that speaks TLS alone (``--port 0``), clients not asked for a
    certificate (``--tls-auth-clients no``: Redis's password is the authentication)."""
    port = free_port()
    directory = root / "tls"
    args = [
        *data_node_args(directory, 0),
        "--tls-port", str(port),
        "--tls-cert-file", str(files.certificate),
        "--tls-key-file", str(files.key),
        "--tls-ca-cert-file", str(files.ca),
        "--tls-auth-clients", "no",
    ]  # fmt: skip
    node = RedisNode(
        "tls",
        directory,
        port,
        args,
        client_options={"ssl": True, "ssl_ca_certs": str(files.ca)},
    )
    node.start()
    try:
        yield node
    finally:
        node.stop()
