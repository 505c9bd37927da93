"""``kave routes validate|test``, run as a real process (no database needed)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from tests.kave.support import env_without_kave_settings
from tests.kave.support import kave as run_kave
from tests.services import REPO

ROUTES = REPO / "tests" / "fixtures" / "handoff" / "routes.yaml"


def kave(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``kave ARGS`` with nothing configured but the fixture routes file (and ``env``)."""
    routes = {"KAVE_HANDOFF_ROUTES_FILE": str(ROUTES), **env}
    return run_kave(args, env_without_kave_settings() | routes)


SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


def test_routes_validate_lists_the_routes() -> None:
    result = kave(["routes", "validate"], KAVE_HANDOFF_SECRET_PLATFORM=SECRET)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4. everything-else (catch-all) -> celery task kave.handlers.inbox" in result.stdout
    assert "4 routes OK" in result.stdout
    assert SECRET not in result.stdout


def test_routes_validate_refuses_a_missing_secret(tmp_path: Path) -> None:
    result = kave(["routes", "validate"])
    # Exit 1: the file is valid, this environment cannot run it (a worker would refuse).
    assert result.returncode == 1, result.stdout + result.stderr
    assert "4. everything-else (catch-all)" in result.stdout
    assert (
        "kave: route 'invoices': KAVE_HANDOFF_SECRET_PLATFORM must hold a secret and is "
        "not set in this environment" in result.stdout
    )
    assert "4 routes valid, but this environment lacks what 1 of their" in result.stdout
    assert "routes OK" not in result.stdout


def test_routes_validate_names_every_missing_secret(tmp_path: Path) -> None:
    def http(name: str, secret_env: str) -> dict[str, object]:
        target = {"url": "https://platform.example/hooks", "secret_env": secret_env}
        return {"name": name, "match": {"sender": f"*@{name}.example"}, "handler": {"http": target}}

    routes = tmp_path / "routes.json"
    routes.write_text(
        json.dumps(
            {"routes": [http("crm", "KAVE_HANDOFF_SECRET_CRM"), http("desk", "KAVE_DESK_KEY")]}
        )
    )
    result = kave(["routes", "validate", "--file", str(routes)], KAVE_DESK_KEY="")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "route 'crm': KAVE_HANDOFF_SECRET_CRM must hold a secret and is not set" in (
        result.stdout
    )
    assert "route 'desk': KAVE_DESK_KEY must hold a secret and is empty" in result.stdout

    env = {"KAVE_HANDOFF_SECRET_CRM": SECRET, "KAVE_DESK_KEY": SECRET}
    fixed = kave(["routes", "validate", "--file", str(routes)], **env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "2 routes OK" in fixed.stdout


def test_routes_validate_refuses_an_invalid_file_with_exit_2(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  - name: Bad Name\n")
    result = kave(["routes", "validate", "--file", str(routes)])
    assert result.returncode == 2
    assert "kave: invalid routes: routes.0.name" in result.stdout


def test_routes_test_prints_the_matching_route() -> None:
    env = {"KAVE_HANDOFF_SECRET_PLATFORM": SECRET}

    def route_line(*args: str) -> str:
        shown = kave(["routes", "test", *args], **env).stdout.strip().splitlines()
        # First the sender-trust verdict the match used (unknown unless one is given).
        assert shown[0].startswith("sender_trust: "), shown
        return shown[-1]

    ticket = route_line("support+ticket-42@example.com")
    assert ticket == "tickets -> celery task kave.handlers.tickets on queue platform"
    invoice = route_line("ap@billing.example.com", "--subject", "Invoice 7", "--sender", "a@b.c")
    assert invoice == "invoices -> http POST http://127.0.0.1:9/hooks/mail"
    assert route_line("support+ticket-42@example.com", "--auto-submitted").startswith("bounces ->")
    listed = route_line("support+ticket-42@example.com", "--bulk")
    assert listed.startswith("everything-else ->")
    verdict = kave(["routes", "test", "a@x.org", "--sender-trust", "pass"], **env).stdout
    assert verdict.startswith("sender_trust: pass (given)")
