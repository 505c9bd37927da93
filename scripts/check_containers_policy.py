"""Kave's container rules that no schema or linter knows about.

Run by scripts/check-containers after the Compose-schema check and hadolint. Reads
docker-compose.yml (anchors and merge keys resolved by the YAML loader, variables left as
written, so "${FLOWER_BASIC_AUTH:?...}" can be seen to be required), optionally the output
of `docker compose config --format json` (variables substituted, everything normalised),
the Dockerfiles and .dockerignore (and kave.env, if there is one). Prints one line per
finding; exits 1 if any.

    python scripts/check_containers_policy.py [--resolved compose.json] [--root DIR]

The rules live in scripts/kave_policy (compose, compose_services, compose_privilege,
dockerfiles); this file only reads the files and reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from kave_policy.compose import check_compose
from kave_policy.compose_privilege import check_secrets, check_tuning_env_file
from kave_policy.compose_redis_ha import check_redis_ha
from kave_policy.dockerfiles import check_dockerfile, check_dockerignore
from kave_policy.values import Findings, load_yaml

ROOT = Path(__file__).resolve().parent.parent


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--resolved", type=Path, help="output of `docker compose config --format json`"
    )
    parser.add_argument(
        "--resolved-ha",
        type=Path,
        help="`docker compose config --format json` of docker-compose.yml with "
        "docker-compose.redis-ha.yml over it",
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
    check_redis_ha_override(root, options.resolved_ha, findings)
    check_dockerfile(root / "Dockerfile.receiver", "receiver", findings)
    check_dockerfile(root / "Dockerfile.api", "api", findings)
    check_dockerfile(root / "Dockerfile.worker", "worker", findings)
    check_dockerignore(root / ".dockerignore", findings)
    check_tuning_env_file(root / "kave.env", findings)

    for item in findings.items:
        print(f"policy: {item}")
    return 1 if findings.items else 0


def check_redis_ha_override(root: Path, resolved: Path | None, findings: Findings) -> None:
    """The override as written (every secret required from .env, none literal) and, when
    compose resolved it over the production file, the combination: every production rule
    still holds, plus the HA rules."""
    where = "docker-compose.redis-ha.yml"
    doc = load_yaml(root / where)
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        findings.check(False, where, "no services mapping")
        return

    def check_raw(ok: object, name: str, message: str) -> None:
        findings.check(ok, f"{where}: services.{name}", message)

    check_secrets(doc["services"], check_raw, raw=True)
    if resolved is None:
        return
    combined = json.loads(resolved.read_text(encoding="utf-8"))
    where = "docker compose config (with docker-compose.redis-ha.yml)"
    check_compose(combined, where, findings, raw=False)

    def check_resolved(ok: object, name: str, message: str) -> None:
        findings.check(ok, f"{where}: services.{name}", message)

    check_redis_ha(combined.get("services") or {}, check_resolved)


if __name__ == "__main__":
    sys.exit(main())
