"""Authorising MCP requests with the API's own bearer keys, before the SDK sees them.

The SDK's own auth expects an OAuth authorization server; Kave's callers already hold
bearer tokens (users' JWTs, agent keys), so this wrapper authenticates them exactly as
every REST route does (api.access.principal: the same lookup, revocation on the next
request, the same per-caller rate limit) and answers 401/429 in the API's error format
otherwise. The caller travels to the tools in the ASGI scope, under ``SCOPE_KEY``; the
SDK hands tools the HTTP request it came with (``ctx.request_context.request``).
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.access.policies import read_mail
from api.access.principal import Principal, authenticate
from api.ratelimit import count_api_request
from shared.settings import parse_rate
from shared.web.errors import ApiError, error_body

SCOPE_KEY = "kave.principal"
STATE_KEY = "kave.state"  # the API app's state: sessions, object store


def caller_of(request: Any) -> tuple[Principal, Any]:
    """The caller of the HTTP request a tool call came in, and the API app's state (both
    set by :class:`McpGate`)."""
    scope = request.scope if request is not None else {}
    principal = scope.get(SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise RuntimeError("MCP request without an authenticated caller")
    return principal, scope[STATE_KEY]


class McpGate:
    """ASGI wrapper: authenticate, count, then pass on with the caller in the scope."""

    # What tests/api/test_access_matrix.py checks this mount against.
    kave_policy = staticmethod(read_mail)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = await self._principal(request)
        except ApiError as exc:
            response = JSONResponse(
                error_body(exc.message), status_code=exc.status_code, headers=exc.headers
            )
            await response(scope, receive, send)
            return
        state = request.app.state
        await self.app({**scope, SCOPE_KEY: principal, STATE_KEY: state}, receive, send)

    async def _principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" else None
        state = request.app.state

        def lookup() -> Principal:
            with state.session_factory() as session:
                return authenticate(session, state.settings, bearer)

        principal = await anyio.to_thread.run_sync(lookup)
        rate = parse_rate(principal.rate_limit) if principal.rate_limit else None
        await count_api_request(request, principal.bucket, rate)
        return principal
