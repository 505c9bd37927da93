"""Kave's container rules that no schema or linter knows about.

Run by scripts/check-containers after the Compose-schema check and hadolint. Reads
docker-compose.yml (anchors and merge keys resolved by the YAML loader, variables left as
written, so "${FLOWER_BASIC_AUTH:?...}" can be seen to be required), optionally the output
of `docker compose config --format json` (variables substituted, everything normalised),
the two Dockerfiles and .dockerignore (and kave.env, if there is one). Prints one line
per finding; exits 1 if any.

    python scripts/check_containers_policy.py [--resolved compose.json] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

REQUIRED_SERVICES = (
    "postgres",
    "redis",
    "minio",
    "minio-init",
    "migrate",
    "receiver",
    "api",
    "worker",
    "beat",
    "flower",
)
LONG_RUNNING = ("postgres", "redis", "minio", "receiver", "api", "worker", "beat", "flower")
ONE_SHOT = ("minio-init", "migrate")
KAVE_SERVICES = ("migrate", "receiver", "api", "worker", "beat", "flower")
BACKING_SERVICES = ("postgres", "redis", "minio")  # no host ports in the production file
# Variables that hold a secret: compose must require them (${VAR:?...}), never default
# them, and never write a literal in their place.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEYS?$|AUTH", re.IGNORECASE)
SECRET_VARIABLES = (
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "KAVE_S3_SECRET_ACCESS_KEY",
    "FLOWER_BASIC_AUTH",
    "KAVE_JWT_SECRET_KEY",
    "KAVE_METRICS_TOKEN",
    "KAVE_MANDRILL_WEBHOOK_KEYS",
)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
# The password part of a service URL (scheme://user:PASSWORD@host...).
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@]*:(?P<password>.*)@[^@]*$")
_S3 = ("KAVE_S3_ACCESS_KEY_ID", "KAVE_S3_SECRET_ACCESS_KEY")
# The secrets and service addresses each Kave process reads
# (shared/settings/production.py PROCESS_NEEDS plus the S3 key pair;
# tests/ops/test_process_settings.py keeps them in step). A service gets exactly these of
# SCOPED_VARIABLES: the public receiver never holds the database URL or the JWT key, beat
# and the migration almost nothing.
PROCESS_VARIABLES: dict[str, frozenset[str]] = {
    "receiver": frozenset(
        {"KAVE_REDIS_URL", *_S3, "KAVE_MANDRILL_WEBHOOK_KEYS", "KAVE_METRICS_TOKEN"}
    ),
    "api": frozenset(
        {"KAVE_DATABASE_URL", "KAVE_REDIS_URL", *_S3, "KAVE_JWT_SECRET_KEY", "KAVE_METRICS_TOKEN"}
    ),
    "worker": frozenset({"KAVE_DATABASE_URL", "KAVE_REDIS_URL", *_S3}),
    "beat": frozenset({"KAVE_REDIS_URL"}),
    "flower": frozenset({"KAVE_REDIS_URL", "FLOWER_BASIC_AUTH"}),
    "migrate": frozenset({"KAVE_DATABASE_URL"}),
}
SCOPED_VARIABLES = frozenset(
    {
        *set().union(*PROCESS_VARIABLES.values()),
        "KAVE_FLOWER_BASIC_AUTH",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "REDISCLI_AUTH",
        "MINIO_ROOT_PASSWORD",
    }
)
# The env files a Kave service may read: non-secret tuning for all, the hand-off routes
# file and its signing secrets for the workers. Never .env: it holds every secret.
ENV_FILES: dict[str, frozenset[str]] = {
    name: frozenset({"kave.env", "handoff.env"} if name == "worker" else {"kave.env"})
    for name in KAVE_SERVICES
}
# Capabilities a service may add back after cap_drop: [ALL]: what the entrypoints of the
# postgres and redis images need to hand their data directory to their own user.
CAP_ADD = {
    "postgres": frozenset({"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"}),
    "redis": frozenset({"CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"}),
}
# The Kave processes write only to /tmp (beat's schedule, the worker's metrics files).
WRITES_TMP = KAVE_SERVICES
TASK_TIME_LIMIT_SECONDS = 240  # shared.settings default; the worker must outlive a task
RECEIVER_DRAIN_SECONDS = 30  # uvicorn --timeout-graceful-shutdown

RECEIVER_CMD = [
    "uvicorn",
    "receiver.app:create_app",
    "--factory",
    "--host",
    "0.0.0.0",  # noqa: S104  (inside the container; compose decides what is published)
    "--port",
    "8000",
    "--timeout-graceful-shutdown",
    "30",
    "--no-access-log",
    # The client address is Kave's to decide (KAVE_TRUSTED_PROXIES): uvicorn must not
    # rewrite it from X-Forwarded-For first.
    "--no-proxy-headers",
]

# The management API: the receiver's image, its own process.
API_CMD = ["api.app:create_app" if arg == RECEIVER_CMD[1] else arg for arg in RECEIVER_CMD]
API_PORT_RAW = "${KAVE_API_BIND:-127.0.0.1}:${KAVE_API_PORT:-8001}:8000"


class Findings:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: object, where: str, message: str) -> None:
        item = f"{where}: {message}"
        if not ok and item not in self.items:
            self.items.append(item)


# --- helpers -------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    try:
        import yaml

        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except ImportError:  # check-jsonschema always brings ruamel.yaml
        from ruamel.yaml import YAML

        return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def as_argv(command: Any) -> list[str]:
    """A compose command (list or string) as a list of strings."""
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    # An unquoted YAML 1.1 `yes` loads as True; compose (YAML 1.2) reads it as "yes".
    return ["yes" if item is True else str(item) for item in command]


def as_env(environment: Any) -> dict[str, str]:
    if environment is None:
        return {}
    if isinstance(environment, dict):
        return {str(k): "" if v is None else str(v) for k, v in environment.items()}
    env: dict[str, str] = {}
    for item in environment:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def as_depends(depends_on: Any) -> dict[str, str]:
    """service -> condition (list syntax means service_started)."""
    if depends_on is None:
        return {}
    if isinstance(depends_on, list):
        return dict.fromkeys(map(str, depends_on), "service_started")
    return {
        str(name): str((spec or {}).get("condition", "service_started"))
        for name, spec in depends_on.items()
    }


def container_ports(ports: Any) -> list[int]:
    """The container-side port of each published port (short or long syntax)."""
    result: list[int] = []
    for port in ports or []:
        if isinstance(port, dict):
            result.append(int(port["target"]))
        else:
            target = str(port).split("/")[0].rsplit(":", 1)[-1]
            result.append(int(target.split("-")[0]))
    return result


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def seconds(duration: Any) -> float | None:
    """A compose duration ("300s", "5m0s", "1m30s") in seconds; None if unset."""
    if duration is None:
        return None
    if isinstance(duration, int | float):  # resolved JSON may give nanoseconds
        return float(duration) / 1e9 if duration > 10_000 else float(duration)
    text = str(duration).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def contains_sequence(argv: list[str], *sequence: str) -> bool:
    n = len(sequence)
    return any(argv[i : i + n] == list(sequence) for i in range(len(argv) - n + 1))


def option_value(argv: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value`."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def healthcheck_text(service: dict[str, Any]) -> str:
    return " ".join(map(str, (service.get("healthcheck") or {}).get("test") or []))


def mounts(service: dict[str, Any], target: str) -> bool:
    """Whether a volume is mounted at target (short or long syntax)."""
    return any(
        str(v).endswith(":" + target) or (isinstance(v, dict) and v.get("target") == target)
        for v in service.get("volumes") or []
    )


def healthcheck_enabled(service: dict[str, Any]) -> bool:
    hc = service.get("healthcheck")
    if not hc or hc.get("disable"):
        return False
    test = hc.get("test")
    return bool(test) and test != ["NONE"]


# --- compose -------------------------------------------------------------------------


Services = dict[str, dict[str, Any]]
Check = Callable[[object, str, str], None]


def check_compose(doc: Any, where: str, findings: Findings, *, raw: bool) -> None:
    """Every rule for one compose document (raw: variables not yet substituted)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        findings.check(False, where, "no services mapping")
        return
    services: Services = doc["services"]
    for name in REQUIRED_SERVICES:
        findings.check(name in services, where, f"service {name!r} is missing")
    if any(name not in services for name in REQUIRED_SERVICES):
        return

    def check(ok: object, name: str, message: str) -> None:
        findings.check(ok, f"{where}: services.{name}", message)

    _check_images_and_restarts(services, check)
    _check_worker(services["worker"], check, raw=raw)
    _check_receiver(services["receiver"], check)
    _check_api(services["api"], services["receiver"], check, raw=raw)
    _check_flower(services["flower"], check, raw=raw)
    _check_redis(services["redis"], check, raw=raw)
    _check_backing_services(services, check, raw=raw)
    _check_start_order(services, check)
    _check_settings(services, check)
    _check_process_variables(services, check)
    _check_secrets(services, check, raw=raw)
    _check_hardening(services, check, raw=raw)
    _check_uvicorn(services, check)


def _check_images_and_restarts(services: Services, check: Check) -> None:
    # Images: built locally, or pinned to a tag that is not "latest".
    for name, svc in services.items():
        if "build" in svc:
            continue
        image = str(svc.get("image", ""))
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        check(
            (tag and tag != "latest") or "@sha256:" in image,
            name,
            f"image {image!r} must be pinned to a tag other than latest",
        )
    for name in LONG_RUNNING:
        svc = services[name]
        check(healthcheck_enabled(svc), name, "needs a healthcheck")
        check(
            svc.get("restart") in ("always", "unless-stopped", "on-failure"),
            name,
            "a long-running service needs restart: unless-stopped (or always)",
        )
    for name in ONE_SHOT:
        check(
            services[name].get("restart") in (None, "no"),
            name,
            'a one-shot service must not restart (restart: "no")',
        )


def _check_worker(worker: dict[str, Any], check: Check, *, raw: bool) -> None:
    """Scalable with `docker compose up -d --scale worker=N`, warm shutdown on SIGTERM."""
    check("container_name" not in worker, "worker", "container_name prevents --scale worker=N")
    check(
        "hostname" not in worker,
        "worker",
        "a fixed hostname gives every replica the same Celery node name",
    )
    check(not worker.get("ports"), "worker", "host ports prevent --scale worker=N")
    argv = as_argv(worker.get("command"))
    check(argv[:1] == ["celery"] and "worker" in argv, "worker", "command must run celery worker")
    check(
        contains_sequence(argv, "-Q", "kave") or option_value(argv, "--queues") == "kave",
        "worker",
        "worker must consume the kave queue (-Q kave)",
    )
    concurrency = option_value(argv, "--concurrency") or option_value(argv, "-c") or ""
    if raw:
        check(
            "KAVE_WORKER_CONCURRENCY" in concurrency,
            "worker",
            "--concurrency must come from ${KAVE_WORKER_CONCURRENCY:-2}",
        )
    else:
        check(
            concurrency.isdigit(),
            "worker",
            f"--concurrency resolved to {concurrency!r}, not a number",
        )
    grace = seconds(worker.get("stop_grace_period"))
    check(
        grace is not None and grace > TASK_TIME_LIMIT_SECONDS,
        "worker",
        f"stop_grace_period must exceed the {TASK_TIME_LIMIT_SECONDS} s task limit "
        "so a warm shutdown can finish its tasks",
    )
    check(
        worker.get("stop_signal", "SIGTERM") == "SIGTERM",
        "worker",
        "Celery warm-shuts down on SIGTERM",
    )


def _check_receiver(receiver: dict[str, Any], check: Check) -> None:
    check(8000 in container_ports(receiver.get("ports")), "receiver", "must publish port 8000")
    check(
        as_argv(receiver.get("command")) in ([], RECEIVER_CMD),
        "receiver",
        f"command must be {' '.join(RECEIVER_CMD)}",
    )
    grace = seconds(receiver.get("stop_grace_period"))
    check(
        grace is not None and grace > RECEIVER_DRAIN_SECONDS,
        "receiver",
        f"stop_grace_period must exceed uvicorn's {RECEIVER_DRAIN_SECONDS} s drain",
    )
    check(
        "/readyz" in healthcheck_text(receiver) or "/healthz" in healthcheck_text(receiver),
        "receiver",
        "healthcheck must call /readyz or /healthz",
    )


def _names_host_address(port: Any) -> bool:
    """``docker compose config`` writes ports as mappings; a short string is the same rule."""
    if isinstance(port, dict):
        return bool(port.get("host_ip"))
    return str(port).count(":") == 2 and bool(str(port).split(":", 1)[0])


def _check_api(api: dict[str, Any], receiver: dict[str, Any], check: Check, *, raw: bool) -> None:
    """Its own process from the receiver's image; internal unless the operator says so."""
    check(as_argv(api.get("command")) == API_CMD, "api", f"command must be {' '.join(API_CMD)}")
    check(api.get("image") == receiver.get("image"), "api", "must run the receiver's image")
    ports = api.get("ports") or []
    if raw:
        check(
            all(str(port) == API_PORT_RAW for port in ports),
            "api",
            f"publish only on loopback by default: {API_PORT_RAW!r} (or expose: only)",
        )
    else:
        check(
            all(_names_host_address(port) for port in ports),
            "api",
            "a published port must name its host address (loopback by default)",
        )
    grace = seconds(api.get("stop_grace_period"))
    check(
        grace is not None and grace > RECEIVER_DRAIN_SECONDS,
        "api",
        f"stop_grace_period must exceed uvicorn's {RECEIVER_DRAIN_SECONDS} s drain",
    )
    check("/readyz" in healthcheck_text(api), "api", "healthcheck must call /readyz")


def _check_flower(flower: dict[str, Any], check: Check, *, raw: bool) -> None:
    """Basic auth on, from the environment, required."""
    argv = as_argv(flower.get("command"))
    check(argv[:1] == ["celery"] and "flower" in argv, "flower", "command must run celery flower")
    check(5555 in container_ports(flower.get("ports")), "flower", "must publish port 5555")
    auth = as_env(flower.get("environment")).get("FLOWER_BASIC_AUTH", "")
    if raw:
        check(
            auth.startswith("${FLOWER_BASIC_AUTH:?"),
            "flower",
            "FLOWER_BASIC_AUTH must be required: ${FLOWER_BASIC_AUTH:?...}",
        )
    else:
        check(":" in auth, "flower", "FLOWER_BASIC_AUTH must be user:password")
    check(
        not any(a.startswith(("--basic_auth", "--basic-auth")) for a in argv),
        "flower",
        "put credentials in FLOWER_BASIC_AUTH, not on the command line",
    )


def _check_redis(redis: dict[str, Any], check: Check, *, raw: bool) -> None:
    """AOF every second and noeviction: a 200 to Mandrill means the batch is durable.
    A password: without one anyone on the network can read and inject tasks."""
    argv = as_argv(redis.get("command"))
    check(argv[:1] == ["redis-server"], "redis", "command must start redis-server")
    for option, value in (
        ("--appendonly", "yes"),
        ("--appendfsync", "everysec"),
        ("--maxmemory-policy", "noeviction"),
    ):
        check(option_value(argv, option) == value, "redis", f"needs {option} {value}")
    check(option_value(argv, "--maxmemory"), "redis", "needs --maxmemory")
    check(mounts(redis, "/data"), "redis", "needs a volume on /data")
    hc = healthcheck_text(redis)
    check("redis-cli" in hc and "ping" in hc, "redis", "healthcheck must redis-cli ping")
    requirepass = option_value(argv, "--requirepass") or ""
    cli_auth = as_env(redis.get("environment")).get("REDISCLI_AUTH", "")
    if raw:
        check(
            requirepass.startswith("${REDIS_PASSWORD:?"),
            "redis",
            "needs --requirepass ${REDIS_PASSWORD:?...} (a required password, no default)",
        )
    else:
        check(requirepass, "redis", "needs --requirepass with a non-empty password")
    check(
        cli_auth == requirepass,
        "redis",
        "REDISCLI_AUTH must be the --requirepass password (the healthcheck needs it)",
    )


def _check_backing_services(services: Services, check: Check, *, raw: bool) -> None:
    for name, target in (("postgres", "/var/lib/postgresql/data"), ("minio", "/data")):
        check(mounts(services[name], target), name, f"needs a named volume on {target}")
    check(
        "pg_isready" in healthcheck_text(services["postgres"]),
        "postgres",
        "healthcheck must use pg_isready",
    )
    if raw:
        for name in BACKING_SERVICES:
            check(
                not services[name].get("ports"),
                name,
                "no host ports in the production file (a dev override may add them)",
            )


def _check_start_order(services: Services, check: Check) -> None:
    for name in ("receiver", "api", "worker", "flower"):
        deps = as_depends(services[name].get("depends_on"))
        check(
            deps.get("migrate") == "service_completed_successfully",
            name,
            "must depend on migrate with condition: service_completed_successfully",
        )
        for backing in ("postgres", "redis"):
            check(
                deps.get(backing) == "service_healthy",
                name,
                f"must depend on {backing} with condition: service_healthy",
            )
    for name in ("receiver", "api", "worker"):
        check(
            as_depends(services[name].get("depends_on")).get("minio-init")
            == "service_completed_successfully",
            name,
            "must wait for the bucket (minio-init: service_completed_successfully)",
        )
    check(
        as_depends(services["migrate"].get("depends_on")).get("postgres") == "service_healthy",
        "migrate",
        "must depend on postgres with condition: service_healthy",
    )
    check(
        as_argv(services["migrate"].get("command")) == ["kave", "migrate"],
        "migrate",
        "command must be kave migrate",
    )
    check(
        as_depends(services["minio-init"].get("depends_on")).get("minio") == "service_healthy",
        "minio-init",
        "must depend on minio with condition: service_healthy",
    )


def _check_settings(services: Services, check: Check) -> None:
    for name in KAVE_SERVICES:
        env = as_env(services[name].get("environment"))
        reads = PROCESS_VARIABLES[name]
        database_url = env.get("KAVE_DATABASE_URL", "")
        check(env.get("KAVE_ENV") == "production", name, "KAVE_ENV must be production")
        if "KAVE_REDIS_URL" in reads:
            check(
                re.fullmatch(r"redis://:.+@redis:6379/\d+", env.get("KAVE_REDIS_URL", "")),
                name,
                "KAVE_REDIS_URL must be redis://:PASSWORD@redis:6379/N (the redis service)",
            )
        if "KAVE_DATABASE_URL" in reads:
            check(
                database_url.startswith("postgresql+psycopg://")
                and "@postgres:5432/" in database_url,
                name,
                "KAVE_DATABASE_URL must be postgresql+psycopg://...@postgres:5432/...",
            )
        if "KAVE_S3_SECRET_ACCESS_KEY" in reads:
            check(
                env.get("KAVE_OBJECT_STORE") == "s3"
                and env.get("KAVE_S3_ENDPOINT_URL") == "http://minio:9000",
                name,
                "KAVE_OBJECT_STORE=s3 with KAVE_S3_ENDPOINT_URL=http://minio:9000",
            )
    images = {services[name].get("image") for name in ("migrate", "worker", "flower")}
    check(len(images) == 1, "migrate", "migrate, worker and flower must run the same image")


def env_file_paths(service: dict[str, Any]) -> list[str]:
    """The env files of a service (short or long syntax), as written."""
    files = service.get("env_file") or []
    if isinstance(files, str | dict):
        files = [files]
    return [str(f.get("path") if isinstance(f, dict) else f) for f in files]


def _check_process_variables(services: Services, check: Check) -> None:
    """Each Kave service gets only the secrets and addresses its process reads."""
    for name in KAVE_SERVICES:
        svc = services[name]
        env = as_env(svc.get("environment"))
        reads = PROCESS_VARIABLES[name]
        check(
            env.get("KAVE_PROCESS") == name,
            name,
            f"set KAVE_PROCESS: {name} (production then demands what {name} reads, no more)",
        )
        for variable in sorted(SCOPED_VARIABLES - reads):
            check(
                variable not in env,
                name,
                f"gets {variable}, which {name} does not read (least privilege: only "
                f"{', '.join(sorted(reads))})",
            )
        for variable in sorted(reads - env.keys()):
            check(False, name, f"{variable} is missing ({name} refuses to start without it)")
        for path in env_file_paths(svc):
            base = Path(path).name
            check(
                base in ENV_FILES[name],
                name,
                f"env_file {path}: hands every variable in it to the container; "
                f"only {', '.join(sorted(ENV_FILES[name]))} (never .env, it holds every secret)",
            )


def _check_hardening(services: Services, check: Check, *, raw: bool) -> None:
    """A memory limit, a read-only root with tmpfs where it writes, no capabilities,
    no privilege gain: for every container."""
    for name, svc in services.items():
        memory = svc.get("mem_limit") or (
            ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        ).get("memory")
        if raw:
            check(memory, name, "needs a memory limit (mem_limit)")
        else:
            size = byte_size(memory)
            check(size, name, f"mem_limit resolved to {memory!r}, not a size")
        check(svc.get("read_only") is True, name, "needs read_only: true (tmpfs where it writes)")
        check(
            [str(c).upper() for c in svc.get("cap_drop") or []] == ["ALL"],
            name,
            "needs cap_drop: [ALL]",
        )
        extra = {str(c).upper() for c in svc.get("cap_add") or []} - CAP_ADD.get(name, set())
        check(not extra, name, f"cap_add {sorted(extra)}: not needed by this service")
        check(
            any(
                re.fullmatch(r"no-new-privileges(?:[:=]true)?", str(o))
                for o in svc.get("security_opt") or []
            ),
            name,
            'needs security_opt: ["no-new-privileges:true"]',
        )
        if name in WRITES_TMP:
            check(
                any(str(t).split(":")[0] == "/tmp" for t in as_list(svc.get("tmpfs"))),  # noqa: S108
                name,
                "needs a tmpfs on /tmp (its root file system is read-only)",
            )


_SIZE = re.compile(r"(\d+)\s*([bkmg]?)b?", re.IGNORECASE)


def byte_size(value: Any) -> int | None:
    """A compose size (805306368, "768m", "2g") in bytes; None if it is not one."""
    match = _SIZE.fullmatch(str(value if value is not None else "").strip())
    if not match:
        return None
    power = " kmg".index(match.group(2).lower() or " ")
    return int(match.group(1)) * 1024**power or None


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _check_uvicorn(services: Services, check: Check) -> None:
    for name, svc in services.items():
        argv = as_argv(svc.get("command"))
        if any("uvicorn" in arg for arg in argv):
            check(
                "--no-proxy-headers" in argv
                and not any(
                    a.startswith(("--proxy-headers", "--forwarded-allow-ips")) for a in argv
                ),
                name,
                "run uvicorn with --no-proxy-headers: the client address is decided by Kave "
                "(KAVE_TRUSTED_PROXIES), not rewritten from X-Forwarded-For by uvicorn",
            )


def check_tuning_env_file(path: Path, findings: Findings) -> None:
    """kave.env reaches every Kave container: no secret and no address with a password."""
    if not path.is_file():
        return
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        if not key or key.startswith("#"):
            continue
        findings.check(
            key not in SCOPED_VARIABLES and not SECRET_NAME.search(key),
            f"{path.name}:{number}",
            f"{key} reaches every Kave container from here; set it in .env (compose hands "
            "it only to the services that read it)",
        )
        findings.check(
            not key.startswith("KAVE_HANDOFF_") and key != "KAVE_PROCESS",
            f"{path.name}:{number}",
            f"{key} belongs to handoff.env (workers only) or to docker-compose.yml",
        )


def variables(text: str) -> list[tuple[str, str]]:
    """(name, modifier) of every ${NAME...} / $NAME in text: modifier ":?..." = required."""
    return [
        (braced or bare, modifier)
        for braced, modifier, bare in _VARIABLE.findall(text.replace("$$", ""))
    ]


def strings(node: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """(path, text) of every string in a YAML document (keys and values)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


def _check_secrets(services: Services, check: Check, *, raw: bool) -> None:
    """Every secret required from .env, none defaulted or written in; one value each."""
    if raw:
        for name, svc in services.items():
            for path, text in strings(svc):
                for variable, modifier in variables(text):
                    check(
                        not SECRET_NAME.search(variable) or modifier.startswith(":?"),
                        name,
                        f"{path}: a secret must be required with ${{{variable}:?...}}, "
                        "never defaulted or optional",
                    )
            environment = as_env(svc.get("environment"))
            for key, value in environment.items():
                match = _URL_PASSWORD.match(value)
                secret = match.group("password") if match else value
                if SECRET_NAME.search(key) or match:
                    check(
                        secret.startswith("${") and secret.endswith("}"),
                        name,
                        f"environment.{key}: write the secret as ${{VAR:?...}}, not literally",
                    )
        return
    # Resolved: every copy of a password must be the same value, or a service cannot log in.
    redis_password = option_value(as_argv(services["redis"].get("command")), "--requirepass")
    postgres_password = as_env(services["postgres"].get("environment")).get("POSTGRES_PASSWORD")
    minio_password = as_env(services["minio"].get("environment")).get("MINIO_ROOT_PASSWORD")
    for name in KAVE_SERVICES:
        env = as_env(services[name].get("environment"))
        reads = PROCESS_VARIABLES[name]
        for variable, expected, server in (
            ("KAVE_REDIS_URL", redis_password, "redis --requirepass"),
            ("KAVE_DATABASE_URL", postgres_password, "postgres POSTGRES_PASSWORD"),
        ):
            if variable not in reads:
                continue
            match = _URL_PASSWORD.match(env.get(variable, ""))
            check(
                match and match.group("password") == expected,
                name,
                f"the password in {variable} must be {server}",
            )
        if "KAVE_S3_SECRET_ACCESS_KEY" in reads:
            check(
                env.get("KAVE_S3_SECRET_ACCESS_KEY") == minio_password,
                name,
                "KAVE_S3_SECRET_ACCESS_KEY must be minio's MINIO_ROOT_PASSWORD",
            )


# --- Dockerfiles -----------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def check_dockerfile(path: Path, own: str, findings: Findings) -> None:
    where = path.name
    f = findings
    if not path.is_file():
        f.check(False, where, "missing")
        return
    instructions = dockerfile_instructions(path)
    text = path.read_text(encoding="utf-8")
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1].strip('"')
        for kw, rest in instructions
        if kw == "ARG" and "=" in rest
    }

    for kw, rest in instructions:
        if kw not in ("ENV", "ARG") or not rest:
            continue
        names = re.findall(r"(?:^|\s)([A-Za-z_]\w*)=", rest) or [rest.split()[0]]
        for name in names:
            f.check(
                not SECRET_NAME.search(name),
                where,
                f"{kw} {name}: no secret in the image (it comes from the environment)",
            )

    froms = [rest for kw, rest in instructions if kw == "FROM"]
    f.check(len(froms) >= 2, where, "must be multi-stage (a builder stage and a runtime stage)")
    for spec in froms:
        image = spec.split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        f.check(
            re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image),
            where,
            f"base image {image!r} must be a pinned python:3.11...-slim tag",
        )

    last = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    final = instructions[last:]

    def final_has(keyword: str) -> list[str]:
        return [rest for kw, rest in final if kw == keyword]

    f.check(
        any("--from=" in rest for rest in final_has("COPY")),
        where,
        "the runtime stage must COPY --from the builder stage",
    )
    users = final_has("USER")
    f.check(
        users and users[-1].split(":")[0] not in ("root", "0"),
        where,
        "the runtime stage must switch to a non-root USER",
    )
    f.check(final_has("HEALTHCHECK"), where, "needs a HEALTHCHECK")
    f.check(final_has("STOPSIGNAL") == ["SIGTERM"], where, "needs STOPSIGNAL SIGTERM")
    env_text = " ".join(final_has("ENV"))
    for var in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"):
        f.check(var in env_text, where, f"the runtime stage must set {var}")

    cmds = final_has("CMD")
    cmd: list[str] = []
    if cmds:
        try:
            cmd = json.loads(cmds[-1])
        except json.JSONDecodeError:
            cmd = []
    f.check(cmd, where, "CMD must be in exec (JSON) form so signals reach the server")
    if cmd[:2] == ["sh", "-c"]:
        f.check(
            len(cmd) == 3 and cmd[2].startswith("exec "),
            where,
            "a `sh -c` CMD must `exec` the server so it is PID 1 and gets SIGTERM",
        )

    _check_installs(text, instructions, own, where, f)
    if any("uvicorn" in arg for arg in cmd):
        f.check(
            "--no-proxy-headers" in cmd,
            where,
            "run uvicorn with --no-proxy-headers: the client address is decided by Kave",
        )
    if own == "receiver":
        f.check(cmd == RECEIVER_CMD, where, f"CMD must be {RECEIVER_CMD}")
    else:
        joined = " ".join(cmd)
        f.check(
            "celery -A worker.main worker" in joined and "-Q kave" in joined,
            where,
            "CMD must run celery -A worker.main worker ... -Q kave",
        )


def _check_installs(
    text: str, instructions: list[tuple[str, str]], own: str, where: str, f: Findings
) -> None:
    """Only the image's own pins, each with its hashes; the project itself without deps."""
    own_req = f"requirements/{own}.txt"
    f.check(
        re.search(rf"pip install [^\n]*-r {re.escape(own_req)}", text),
        where,
        f"must pip install -r {own_req}",
    )
    for kw, rest in instructions:
        if kw == "RUN" and re.search(r"pip install\b[^&;|]*\s-r\s", rest):
            f.check(
                re.search(r"pip install\b[^&;|]*--require-hashes", rest),
                where,
                "pip install -r must use --require-hashes (a package that does not match "
                "its pinned hash must fail the build)",
            )
    for req in re.findall(r"requirements/(\w+)\.txt", text):
        f.check(req == own, where, f"installs requirements/{req}.txt; only {own_req} belongs here")
    f.check(
        re.search(r"pip install [^\n]*--no-deps \.", text),
        where,
        "must install the project with pip install --no-deps .",
    )


def check_dockerignore(path: Path, findings: Findings) -> None:
    if not path.is_file():
        findings.check(False, path.name, "missing")
        return
    patterns = {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}
    for needed in (".env", ".git", ".venv/"):
        findings.check(
            needed in patterns or needed.rstrip("/") in patterns,
            path.name,
            f"must exclude {needed}",
        )


# --- main ------------------------------------------------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--resolved", type=Path, help="output of `docker compose config --format json`"
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="directory holding the compose file and Dockerfiles"
    )
    options = parser.parse_args(list(argv) if argv is not None else None)
    root: Path = options.root

    findings = Findings()
    check_compose(load_yaml(root / "docker-compose.yml"), "docker-compose.yml", findings, raw=True)
    if options.resolved:
        resolved = json.loads(options.resolved.read_text(encoding="utf-8"))
        check_compose(resolved, "docker compose config", findings, raw=False)
    check_dockerfile(root / "Dockerfile.receiver", "receiver", findings)
    check_dockerfile(root / "Dockerfile.worker", "worker", findings)
    check_dockerignore(root / ".dockerignore", findings)
    check_tuning_env_file(root / "kave.env", findings)

    for item in findings.items:
        print(f"policy: {item}")
    return 1 if findings.items else 0


if __name__ == "__main__":
    sys.exit(main())
