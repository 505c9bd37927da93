"""Every route of the API app against every kind of caller, over real HTTP.

The routes come from ``app.routes``, so a route added later is checked without anyone
remembering to: it must depend on one of the policies (api/access/policies.py), or be in
the short public list below, and it must then answer as that policy says for each
caller. Allowed callers may meet a 404 or 422 (the ids are made up); never 401 or 403.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import Engine
from starlette.routing import Mount, Route

from api.access.policies import POLICIES, administer, operate, read_mail, read_operations
from api.app import create_app
from shared.settings import Settings
from tests.api.agents import all_callers

# Answer without a caller: probes, metrics (a token of its own), docs, and the login.
PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/openapi.json",
    "/api/v1/docs",
    "/api/v1/docs/oauth2-redirect",
    "/api/v1/docs-assets",
    "/api/v1/auth/token",
}

ALLOWED: dict[Callable[..., Any], set[str]] = {
    read_mail: {"admin", "operator", "reader", "read-key", "support-key"},
    read_operations: {"admin", "operator", "reader", "read-key"},
    operate: {"admin", "operator"},
    administer: {"admin"},
}
# Strictest last: a route with a router's policy and a stricter one of its own.
STRICTNESS = [read_mail, read_operations, operate, administer]
REFUSED_AS_UNKNOWN = {"anonymous", "garbage", "revoked-key", "expired-key"}


def _calls(dependant: Any) -> set[Callable[..., Any]]:
    found = {dependant.call} if dependant.call is not None else set()
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def route_policy(dependant: Any) -> Callable[..., Any] | None:
    policies = [p for p in STRICTNESS if p in _calls(dependant)]
    return policies[-1] if policies else None


def _concrete(path: str) -> str:
    # Made-up ids of the right shape: an integer, or a delivery's uuid.
    path = re.sub(r"\{delivery_id\}", "00000000-0000-4000-8000-000000000000", path)
    return re.sub(r"\{[^}]+\}", "1", path)


def checked_routes(settings: Settings) -> list[tuple[str, str, Callable[..., Any]]]:
    """(method, path, policy) of every non-public route; fails on a route with none."""
    app = create_app(settings)
    checked: list[tuple[str, str, Callable[..., Any]]] = []
    # Included routers flattened, with the dependencies they add (as FastAPI serves them).
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = context.path or ""
        if path in PUBLIC or any(path.startswith(p + "/") for p in PUBLIC):
            continue
        if isinstance(route, APIRoute):
            policy = route_policy(context.dependant)
            assert policy is not None, f"{path} depends on no policy of api/access/policies.py"
            for method in sorted((context.methods or set()) - {"HEAD"}):
                checked.append((method, path, policy))
        elif isinstance(route, Mount):
            policy = getattr(route.app, "kave_policy", None)
            assert policy in POLICIES, f"mounted app {path} declares no kave_policy"
            checked.append(("POST", path + "/", policy))
        elif isinstance(route, Route):
            raise AssertionError(f"{path} is a bare Starlette route: give it a policy")
    return checked


def test_every_route_answers_every_caller_as_its_policy_says(
    agent_api: str, agent_settings: Settings, clean_db: Engine
) -> None:
    callers = all_callers(clean_db, agent_settings)
    routes = checked_routes(agent_settings)
    assert len(routes) >= 10
    wrong: list[str] = []
    with httpx.Client(base_url=agent_api, timeout=10) as client:
        for method, path, policy in routes:
            for caller in callers.values():
                # Streamed, and closed after the status line: the live feed never ends.
                with client.stream(
                    method, _concrete(path), headers={**caller.headers, "Accept": "*/*"}
                ) as response:
                    status = response.status_code
                if caller.name in REFUSED_AS_UNKNOWN:
                    expected = "401"
                    ok = status == 401
                elif caller.name in ALLOWED[policy]:
                    expected = "neither 401 nor 403"
                    ok = status not in (401, 403)
                else:
                    expected = "403"
                    ok = status == 403
                if not ok:
                    wrong.append(f"{method} {path} as {caller.name}: {status}, want {expected}")
    assert wrong == []


@pytest.mark.parametrize("policy", POLICIES)
def test_the_matrix_knows_every_policy(policy: Callable[..., Any]) -> None:
    assert policy in ALLOWED
    assert policy in STRICTNESS
