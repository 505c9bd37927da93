"""Every rule for one compose document: the entry point of the compose checks.

Runs the service rules (``compose_services``) and the least-privilege and secret rules
(``compose_privilege``) on docker-compose.yml as written (raw: variables not yet
substituted) or as `docker compose config --format json` resolved it.

Imports ``values``, ``compose_services`` and ``compose_privilege``.
"""

from __future__ import annotations

from typing import Any

from . import compose_privilege as privilege
from . import compose_services as shape
from .values import Findings, Services


def check_compose(doc: Any, where: str, findings: Findings, *, raw: bool) -> None:
    """Every rule for one compose document (raw: variables not yet substituted)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        findings.check(False, where, "no services mapping")
        return
    services: Services = doc["services"]
    for name in shape.REQUIRED_SERVICES:
        findings.check(name in services, where, f"service {name!r} is missing")
    if any(name not in services for name in shape.REQUIRED_SERVICES):
        return

    def check(ok: object, name: str, message: str) -> None:
        findings.check(ok, f"{where}: services.{name}", message)

    shape.check_images_and_restarts(services, check)
    shape.check_worker(services["worker"], check, raw=raw)
    shape.check_receiver(services["receiver"], check)
    shape.check_api(services["api"], check, raw=raw)
    shape.check_flower(services["flower"], check, raw=raw)
    shape.check_redis(services["redis"], check, raw=raw)
    shape.check_backing_services(services, check, raw=raw)
    shape.check_start_order(services, check)
    privilege.check_settings(services, check)
    privilege.check_process_variables(services, check)
    privilege.check_secrets(services, check, raw=raw)
    privilege.check_hardening(services, check, raw=raw)
    privilege.check_uvicorn(services, check)
