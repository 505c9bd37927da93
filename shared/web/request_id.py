"""Request ids: taken from ``X-Request-ID`` (when sane) or generated, echoed back, and
bound to the logging context so every line of the request carries it."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
# Accept a caller's id only if it is short and plain: it ends up in logs and headers.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_request_id: ContextVar[str] = ContextVar("request_id", default="")


def current_request_id() -> str:
    return _request_id.get()


class RequestIdMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _SAFE_ID.match(incoming) else uuid.uuid4().hex
        token = _request_id.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        # Unbound only after a normal return: when an exception escapes, Starlette's
        # outermost error middleware and uvicorn log it after this frame is gone, and
        # those lines must carry the request id too. (Each request runs in its own
        # asyncio task with its own copy of the context, so nothing leaks to the next.)
        await self.app(scope, receive, send_with_id)
        structlog.contextvars.unbind_contextvars("request_id")
        _request_id.reset(token)
