"""The shape of each service in docker-compose.yml: what runs, how it starts and stops.

Every service present; images built here or pinned; healthchecks and restart policies;
the worker scalable with --scale and shut down warm; the receiver's and the API's
commands, ports and drain; Flower's basic auth; Redis durable (AOF, noeviction) and
password-protected; the backing services on volumes with no host ports; the start
order. The service names and the uvicorn commands are defined here for the other
modules too.

Imports ``values`` only.
"""

from __future__ import annotations

from typing import Any

from .values import (
    Check,
    Services,
    as_argv,
    as_depends,
    as_env,
    container_ports,
    contains_sequence,
    healthcheck_enabled,
    healthcheck_text,
    mounts,
    option_value,
    seconds,
)

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
TASK_TIME_LIMIT_SECONDS = 240  # shared.settings default; the worker must outlive a task
RECEIVER_DRAIN_SECONDS = 30  # uvicorn --timeout-graceful-shutdown
UVICORN_DRAIN = f"uvicorn's {RECEIVER_DRAIN_SECONDS} s drain"
# The image each Kave service runs, and the Dockerfile it is built from: the public
# receiver's image carries nothing of the API or the worker.
IMAGES = {
    "receiver": ("kave-receiver", "Dockerfile.receiver"),
    "api": ("kave-api", "Dockerfile.api"),
    **dict.fromkeys(("migrate", "worker", "beat", "flower"), ("kave-worker", "Dockerfile.worker")),
}

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

# The management API: the receiver's web server, its own app, process and image.
API_CMD = ["api.app:create_app" if arg == RECEIVER_CMD[1] else arg for arg in RECEIVER_CMD]
API_PORT_RAW = "${KAVE_API_BIND:-127.0.0.1}:${KAVE_API_PORT:-8001}:8000"


def check_images_and_restarts(services: Services, check: Check) -> None:
    # Kave's images: each service its own, built from its Dockerfile.
    for name, (image, dockerfile) in IMAGES.items():
        svc = services[name]
        build = svc.get("build")  # `build: .` (a string) means ./Dockerfile
        check(
            str(svc.get("image", "")).partition(":")[0] == image
            and isinstance(build, dict)
            and build.get("dockerfile") == dockerfile,
            name,
            f"must run image {image}, built from {dockerfile}",
        )
    worker_images = {services[name].get("image") for name in ("migrate", "worker", "flower")}
    check(len(worker_images) == 1, "migrate", "migrate, worker and flower must run the same image")
    # Other images: built locally, or pinned to a tag that is not "latest".
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


def check_worker(worker: dict[str, Any], check: Check, *, raw: bool) -> None:
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
    _check_stop_grace(
        worker,
        "worker",
        TASK_TIME_LIMIT_SECONDS,
        f"the {TASK_TIME_LIMIT_SECONDS} s task limit so a warm shutdown can finish its tasks",
        check,
    )
    check(
        worker.get("stop_signal", "SIGTERM") == "SIGTERM",
        "worker",
        "Celery warm-shuts down on SIGTERM",
    )


def _check_stop_grace(
    service: dict[str, Any], name: str, limit: float, what: str, check: Check
) -> None:
    """Docker waits stop_grace_period after SIGTERM, then kills: it must outlast ``limit``."""
    grace = seconds(service.get("stop_grace_period"))
    check(grace is not None and grace > limit, name, f"stop_grace_period must exceed {what}")


def check_receiver(receiver: dict[str, Any], check: Check) -> None:
    check(8000 in container_ports(receiver.get("ports")), "receiver", "must publish port 8000")
    check(
        as_argv(receiver.get("command")) in ([], RECEIVER_CMD),
        "receiver",
        f"command must be {' '.join(RECEIVER_CMD)}",
    )
    _check_stop_grace(receiver, "receiver", RECEIVER_DRAIN_SECONDS, UVICORN_DRAIN, check)
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


def check_api(api: dict[str, Any], check: Check, *, raw: bool) -> None:
    """Its own process and image; internal unless the operator says so."""
    check(as_argv(api.get("command")) == API_CMD, "api", f"command must be {' '.join(API_CMD)}")
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
    _check_stop_grace(api, "api", RECEIVER_DRAIN_SECONDS, UVICORN_DRAIN, check)
    check("/readyz" in healthcheck_text(api), "api", "healthcheck must call /readyz")


def _required_secret(
    check: Check,
    service: str,
    value: str,
    *,
    raw: bool,
    variable: str,
    required: str,
    rendered_ok: bool,
    rendered: str,
) -> None:
    """A secret in the compose file as written must come from the environment with no
    default (``${VARIABLE:?...}``); in the rendered file (``docker compose config``) it
    must be there and well-formed (``rendered_ok``)."""
    if raw:
        check(value.startswith(f"${{{variable}:?"), service, required)
    else:
        check(rendered_ok, service, rendered)


def check_flower(flower: dict[str, Any], check: Check, *, raw: bool) -> None:
    """Basic auth on, from the environment, required."""
    argv = as_argv(flower.get("command"))
    check(argv[:1] == ["celery"] and "flower" in argv, "flower", "command must run celery flower")
    check(5555 in container_ports(flower.get("ports")), "flower", "must publish port 5555")
    auth = as_env(flower.get("environment")).get("FLOWER_BASIC_AUTH", "")
    _required_secret(
        check,
        "flower",
        auth,
        raw=raw,
        variable="FLOWER_BASIC_AUTH",
        required="FLOWER_BASIC_AUTH must be required: ${FLOWER_BASIC_AUTH:?...}",
        rendered_ok=":" in auth,
        rendered="FLOWER_BASIC_AUTH must be user:password",
    )
    check(
        not any(a.startswith(("--basic_auth", "--basic-auth")) for a in argv),
        "flower",
        "put credentials in FLOWER_BASIC_AUTH, not on the command line",
    )


def check_redis(redis: dict[str, Any], check: Check, *, raw: bool) -> None:
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
    _required_secret(
        check,
        "redis",
        requirepass,
        raw=raw,
        variable="REDIS_PASSWORD",
        required="needs --requirepass ${REDIS_PASSWORD:?...} (a required password, no default)",
        rendered_ok=bool(requirepass),
        rendered="needs --requirepass with a non-empty password",
    )
    check(
        cli_auth == requirepass,
        "redis",
        "REDISCLI_AUTH must be the --requirepass password (the healthcheck needs it)",
    )


def check_backing_services(services: Services, check: Check, *, raw: bool) -> None:
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


def check_start_order(services: Services, check: Check) -> None:
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
