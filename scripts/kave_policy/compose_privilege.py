"""Least privilege and secrets in docker-compose.yml, and in kave.env beside it.

Each Kave service gets exactly the secrets and addresses its process reads
(``processes.PROCESS_SECRETS``), says which process it is, and reads no env file but
its own (never .env); every secret is required from .env, never defaulted or written
in, and resolved, every copy of a password is the same; every container has a memory
limit, a read-only root with a tmpfs where it writes, no capabilities it does not need
and no-new-privileges; uvicorn never trusts X-Forwarded-For; kave.env holds no secret.

Imports ``values``, ``processes``, ``uvicorn`` and the service names of
``compose_services``.
"""

from __future__ import annotations

import re
from pathlib import Path

from .compose_services import KAVE_SERVICES
from .processes import PROCESS_SECRETS, SECRET_NAME
from .uvicorn import PROXY_HEADERS_FINDING, trusts_proxy_headers
from .values import (
    Check,
    Findings,
    Services,
    as_argv,
    as_env,
    as_list,
    byte_size,
    env_file_paths,
    option_value,
    strings,
    variables,
)

# Variables that hold a secret: compose must require them (${VAR:?...}), never default
# them, and never write a literal in their place.
SECRET_VARIABLES = (
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "KAVE_S3_SECRET_ACCESS_KEY",
    "FLOWER_BASIC_AUTH",
    "KAVE_JWT_SECRET_KEY",
    "KAVE_METRICS_TOKEN",
    "KAVE_MANDRILL_WEBHOOK_KEYS",
)
# The password part of a service URL (scheme://user:PASSWORD@host...).
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@]*:(?P<password>.*)@[^@]*$")
# A service gets exactly its process's PROCESS_SECRETS of these.
SCOPED_VARIABLES = frozenset(
    {
        *set().union(*PROCESS_SECRETS.values()),
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
    # The Redis HA override's replica runs the same image and entrypoint.
    "redis-replica": frozenset({"CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"}),
}
# The Kave processes write only to /tmp (beat's schedule, the worker's metrics files).
WRITES_TMP = KAVE_SERVICES


def check_settings(services: Services, check: Check) -> None:
    for name in KAVE_SERVICES:
        env = as_env(services[name].get("environment"))
        reads = PROCESS_SECRETS[name]
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


def check_process_variables(services: Services, check: Check) -> None:
    """Each Kave service gets only the secrets and addresses its process reads."""
    for name in KAVE_SERVICES:
        svc = services[name]
        env = as_env(svc.get("environment"))
        reads = PROCESS_SECRETS[name]
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


def check_hardening(services: Services, check: Check, *, raw: bool) -> None:
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


def check_uvicorn(services: Services, check: Check) -> None:
    for name, svc in services.items():
        check(not trusts_proxy_headers(as_argv(svc.get("command"))), name, PROXY_HEADERS_FINDING)


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


def check_secrets(services: Services, check: Check, *, raw: bool) -> None:
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
        reads = PROCESS_SECRETS[name]
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
